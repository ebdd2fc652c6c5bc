"""Read one user-given file or URI under the read limits: regular files only, at most `limit` bytes, and symlinks
below the source root followed only when they resolve inside it.

Devices (/dev/zero), FIFOs and sockets are refused from their stat, before any read, and opened with O_NONBLOCK
so nothing can hang on them; a file is read to at most limit + 1 bytes, so a growing or lying one stops there.
"""

from __future__ import annotations

import os
import stat
import urllib.request
from pathlib import Path

from mmpt.store.limits import Refused, size_text

_FILE_TYPES = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)
_CHUNK = 1 << 20


def read_ref(
    ref: str,
    limit: int,
    *,
    what: str = "file",
    root: str | None = None,
    follow_symlinks: bool = False,
    limit_flag: str = "--max-blob-mb",
) -> bytes:
    """The bytes of a local path, a file:// URI, an http(s) URL or an object-store URI, refused (`Refused`) when
    missing, not a regular file, over `limit` bytes, or a symlink out of `root`."""
    try:
        if "://" not in ref:
            return read_path(
                ref, limit, what=what, root=root, follow_symlinks=follow_symlinks, flag=limit_flag
            )
        scheme = ref.split("://", 1)[0].lower()
        if scheme == "file":
            path = urllib.request.url2pathname(ref[len("file://") :])
            return read_path(
                path, limit, what=what, root=root, follow_symlinks=follow_symlinks, flag=limit_flag
            )
        if scheme in ("http", "https"):
            return _read_http(ref, limit, what, limit_flag)
        return _read_object_store(ref, limit, what, limit_flag)
    except Refused:
        raise
    except (OSError, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        missing = "not found" in message.lower() or "no such file" in message.lower()
        raise Refused(
            "missing_file" if missing else "unreadable_file", f"cannot read {what} {ref}: {message}"
        ) from None


def read_path(
    path: str | Path,
    limit: int,
    *,
    what: str = "file",
    root: str | None = None,
    follow_symlinks: bool = False,
    flag: str = "--max-blob-mb",
) -> bytes:
    """A local regular file's bytes, at most `limit`; see `read_ref`."""
    name = os.fspath(path)
    target = name if root is None or follow_symlinks else inside_root(name, root, what)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        raise Refused("missing_file", f"{what} file not found: {name}") from None
    _require_regular(info.st_mode, name, what)
    _require_size(info.st_size, limit, name, what, flag)
    try:
        fd = os.open(
            target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        )
    except FileNotFoundError:
        raise Refused("missing_file", f"{what} file not found: {name}") from None
    except OSError as exc:
        raise Refused("unreadable_file", f"cannot read {what} {name}: {exc.strerror or exc}") from None
    try:
        _require_regular(os.fstat(fd).st_mode, name, what)  # it may have been swapped since the stat
        parts, total = [], 0
        while total <= limit:
            block = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not block:
                break
            parts.append(block)
            total += len(block)
    except OSError as exc:
        raise Refused("unreadable_file", f"cannot read {what} {name}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    _require_size(total, limit, name, what, flag)
    return b"".join(parts)


def inside_root(path: str, root: str, what: str = "file") -> str:
    """The real path of `path`, refused when it lies below `root` but a symlink on the way leads out of it.

    A path outside the root as written (absolute, or leading out with ..) is read as named: the manifest
    names it itself; only links met below the root are checked.
    """
    absolute, base = os.path.abspath(path), os.path.abspath(root)
    if not _within(absolute, base):
        return path
    real, real_base = os.path.realpath(absolute), os.path.realpath(base)
    if not _within(real, real_base):
        raise Refused(
            "outside_root",
            f"{what} {path} is a symlink to {real}, outside the source folder {root}; "
            "pass --follow-symlinks (follow_symlinks=True) to read it",
        )
    return real


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


def special_kind(mode: int) -> str | None:
    """What a stat mode is when it is not a regular file ("a FIFO (named pipe)", "a character device", ...);
    None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((text for test, text in _FILE_TYPES if test(mode)), "not a regular file")


def _require_regular(mode: int, name: str, what: str) -> None:
    kind = special_kind(mode)
    if kind is None:
        return
    if stat.S_ISDIR(mode):
        raise Refused("unreadable_file", f"{what} path is a folder: {name}")
    raise Refused("not_regular_file", f"{what} {name} is {kind}, not a regular file; only files are read")


def _require_size(size: int, limit: int, name: str, what: str, flag: str) -> None:
    """Refuse `size` over `limit`; a size of limit + 1 is what a capped read saw, so say "larger than"."""
    if size > limit:
        amount = "larger than" if size == limit + 1 else f"{size_text(size)}, over"
        raise Refused("too_large", f"{what} {name} is {amount} the {size_text(limit)} limit", flag)


def _read_http(url: str, limit: int, what: str, flag: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - user-given media URL
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            _require_size(int(length), limit, url, what, flag)
        data: bytes = response.read(limit + 1)
    _require_size(len(data), limit, url, what, flag)
    return data


def _read_object_store(uri: str, limit: int, what: str, flag: str) -> bytes:
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        data: bytes = stream.read(limit + 1)
    _require_size(len(data), limit, uri, what, flag)
    return data
