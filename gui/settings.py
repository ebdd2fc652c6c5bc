"""What the app remembers between sessions (QSettings): recent datasets and runs, device, window layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


class Settings:
    """A thin typed layer over QSettings; `path` gives an INI file instead of the platform store (tests)."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self.qsettings = QSettings("mmpt", "mmpt-gui")
        else:
            self.qsettings = QSettings(str(path), QSettings.Format.IniFormat)

    def recent(self, kind: str) -> list[str]:
        """Recently opened datasets or runs (`kind` = 'datasets' or 'runs'), newest first."""
        value = self.qsettings.value(f"recent/{kind}", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in value or []]

    def add_recent(self, kind: str, item: str) -> None:
        """Put `item` first in a recent list."""
        items = [item] + [v for v in self.recent(kind) if v != item]
        self.qsettings.setValue(f"recent/{kind}", items[:MAX_RECENT])

    def get(self, key: str, default: Any = None) -> Any:
        """A stored value (strings come back as stored; callers convert)."""
        return self.qsettings.value(key, default)

    def set(self, key: str, value: Any) -> None:
        """Store a value."""
        self.qsettings.setValue(key, value)

    def geometry(self, key: str) -> QByteArray | None:
        """A saved window geometry or state blob."""
        value = self.qsettings.value(key)
        return value if isinstance(value, QByteArray) else None

    def sync(self) -> None:
        """Write to disk now."""
        self.qsettings.sync()
