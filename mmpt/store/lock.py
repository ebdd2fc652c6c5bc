"""One writer at a time: an advisory lock file next to a local dataset, held around each commit.

Lance commits are atomic but do not know mmpt's invariants: two appends that each checked their ids against
the version they started from both commit, and the dataset ends up with duplicate ids. Every mmpt write
(`write_batches`, embedding and projection columns, `data verify --repair`) therefore takes this lock, then
re-checks what it must against the newest version, then commits. Only the check and the commit run under
the lock (the slow part, writing data files, does not), so a second writer normally waits a moment.

Local paths: `fcntl.flock` on `<dataset>.lock` (e.g. `corpus.lance.lock`), which the kernel releases when its
holder dies, so kill -9 never leaves a stale lock. The file itself stays; it holds the last holder's pid and
what it was doing, for the waiting message. Object stores (`s3://`, `gs://`, ...) have no such lock: mmpt
then re-checks right before committing, which narrows the race to the commit itself but cannot close it, so
run one writer at a time there (`mmpt data verify` reports duplicate ids if it ever happens).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from mmpt.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0  # seconds a writer waits for another one's commit (MMPT_LOCK_TIMEOUT overrides)
NOTICE_AFTER = 1.0  # say that we are waiting once the wait is longer than this
_POLL = 0.05

_held: dict[str, tuple[int, int]] = {}  # lock path -> (thread id, depth): re-entry from the same thread
_held_guard = threading.Lock()


def lock_path(uri: str | Path) -> Path | None:
    """The lock file of a local dataset (`corpus.lance` -> `corpus.lance.lock`); None for object stores."""
    text = str(uri).rstrip("/")
    if "://" in text and not text.startswith("file://"):
        return None
    if text.startswith("file://"):
        text = text[len("file://") :]
    path = Path(text).resolve()
    return path.with_name(path.name + ".lock")


def lock_timeout(timeout: float | None = None) -> float:
    """The wait limit: `timeout` if given, else $MMPT_LOCK_TIMEOUT, else DEFAULT_TIMEOUT seconds."""
    if timeout is not None:
        return float(timeout)
    value = os.environ.get("MMPT_LOCK_TIMEOUT")
    if value:
        try:
            return float(value)
        except ValueError:
            raise DataError(f"MMPT_LOCK_TIMEOUT must be a number of seconds, got {value!r}") from None
    return DEFAULT_TIMEOUT


def holder(path: Path) -> str:
    """Who holds (or last held) the lock, as written into the lock file: `pid 123, ingest, since 12:00:01`."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']}, {info['what']}, since {info['since'][11:19]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def write_lock(uri: str | Path, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the dataset's write lock for the block; wait up to `timeout` s for another holder, else DataError.

    Re-entrant within a thread; a no-op for object-store URIs (see the module docstring).
    """
    path = lock_path(uri)
    if path is None:
        yield
        return
    key, me = str(path), threading.get_ident()
    with _held_guard:
        owner = _held.get(key)
        if owner is not None and owner[0] == me:
            _held[key] = (me, owner[1] + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                tid, depth = _held[key]
                _held[key] = (tid, depth - 1)
        return

    limit = lock_timeout(timeout)
    if not path.parent.is_dir():
        raise DataError(f"cannot write {uri}: folder {path.parent} does not exist")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, str(uri), what, limit)
        with _held_guard:
            _held[key] = (me, 1)
        try:
            _stamp(fd, what)
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, uri: str, what: str, limit: float) -> None:
    started = time.monotonic()
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - started
        if waited >= limit:
            raise DataError(
                f"another writer ({holder(path)}) kept {uri} locked for {limit:.0f} s, so {what} wrote "
                f"nothing; run again once it has finished (or set MMPT_LOCK_TIMEOUT to wait longer)"
            )
        if not told and waited >= NOTICE_AFTER:
            log.warning(
                "waiting for another writer of %s (%s) to commit; up to %.0f s", uri, holder(path), limit
            )
            told = True
        time.sleep(_POLL)


def _stamp(fd: int, what: str) -> None:
    info = {"pid": os.getpid(), "what": what, "since": datetime.now(UTC).isoformat(timespec="seconds")}
    data = (json.dumps(info) + "\n").encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:  # a read-only or full disk: the stamp is only for messages
        pass
