"""mmpt's PySide6 desktop app: a thin view of mmpt datasets, jobs and explorer sessions (`mmpt gui`)."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Start the app (the `mmpt-gui` script)."""
    from gui.commands import main as run_main

    run_main(argv)
