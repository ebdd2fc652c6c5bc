"""Is a recorded process still the job that wrote it? A pid alone is not enough: pids are reused.

A process is identified by (host, pid, start time). On Linux the start time is field 22 of /proc/<pid>/stat
(clock ticks since boot, exact); elsewhere psutil's create_time when psutil is importable, else unknown
(then only "some process has this pid" can be checked).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_PROC = Path("/proc")


def hostname() -> str:
    """This machine's name, as recorded in status.json and job.json."""
    return socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields from field 3 (state) on; the command name may hold spaces and parentheses."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_start(pid: int) -> float | None:
    """A value that identifies when process `pid` started (None if it does not exist or cannot be told)."""
    if _PROC.is_dir():
        fields = _stat_fields(pid)
        return float(fields[19]) if fields else None  # field 22 = index 19 counted from field 3
    try:
        import psutil
    except ImportError:
        return None
    try:
        return round(psutil.Process(pid).create_time(), 3)
    except psutil.Error:
        return None


def pid_alive(pid: int | None, start: float | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, when `start` is known, is the process that started then."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _PROC.is_dir():
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X"):  # exited, waiting to be reaped
            return False
    if start is None:
        return True
    now = process_start(pid)
    return now is None or now == start


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still there (zombies included, until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of group `pgid`; without /proc, [pgid] while the group has any member."""
    if not _PROC.is_dir():
        return [pgid] if group_alive(pgid) else []
    members = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):  # field 5: process group
                members.append(int(entry.name))
    return members
