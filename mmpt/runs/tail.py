"""Follow a growing file cheaply: new metrics.jsonl events since the last poll, and the last lines of a log."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_BLOCK = 1 << 16


class MetricsTail:
    """Incremental reader of a metrics.jsonl: each `read()` returns only the events appended since the last one.

    It keeps a byte offset and seeks to it, so a poll costs what was appended, not the file's size. A last line
    without its newline (being written) is left for the next read. When the file shrinks or is replaced (a
    resumed run rewrites it, see RunDir.truncate_metrics) the tail starts again from the top and `restarted`
    is True after that read, so followers can reset their curves.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.restarted = False
        self._identity: tuple[int, int] | None = None

    def read(self) -> list[dict[str, Any]]:
        """New complete events since the last read (lines that are not JSON objects are skipped)."""
        self.restarted = False
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            if self.offset:  # the file went away: whatever comes next is a new file
                self.offset, self._identity, self.restarted = 0, None, True
            return []
        with f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            if self._identity is not None and (identity != self._identity or st.st_size < self.offset):
                self.offset, self.restarted = 0, True
            self._identity = identity
            if st.st_size == self.offset:
                return []
            f.seek(self.offset)
            chunk = f.read(st.st_size - self.offset)
        end = chunk.rfind(b"\n") + 1  # only whole lines; a half-written one waits for the next read
        self.offset += end
        return _parse(chunk[:end])


def _parse(chunk: bytes) -> list[dict[str, Any]]:
    """JSON objects of whole lines; parsed as one array when every line is sound (about 3x faster)."""
    body = chunk.strip()
    if not body:
        return []
    try:
        events = json.loads(b"[" + body.replace(b"\n", b",") + b"]")  # JSON strings hold no raw newline
    except ValueError:  # a blank line, or one cut by a hard kill and followed by a resumed run's lines
        events = []
        for line in body.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return [e for e in events if isinstance(e, dict)]


def tail_lines(path: str | Path, n: int = 20) -> list[str]:
    """The last `n` lines of a text file, read backwards from its end (cost independent of its size).

    Carriage-return progress redraws keep only their last state, so a progress bar reads as one line.
    """
    try:
        f = Path(path).open("rb")
    except FileNotFoundError:
        return []
    with f:
        pos = f.seek(0, os.SEEK_END)
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = [_last_redraw(line) for line in data.decode("utf-8", "replace").split("\n")]
    if pos > 0:
        lines = lines[1:]  # the first one is probably cut
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-n:] if n > 0 else []


def _last_redraw(line: str) -> str:
    """What a terminal would show of a line that redraws itself with carriage returns."""
    shown = [part for part in line.split("\r") if part.strip()]
    return shown[-1] if shown else ""
