"""Checkpoint integrity: a sha256 per file in `checksums.json`, written once the files are on disk, checked on load.

A model or checkpoint folder (RUN/checkpoints/step-NNNNNNN, RUN/init, any `save_model` folder) holds
`checksums.json` = {"algorithm": "sha256", "files": {name: {"sha256": hex, "size": bytes}}}. It is written
after every file it lists has been fsynced, itself to a temp name that is fsynced and renamed; a training
checkpoint folder is renamed into place only after that. Loading checks the files it needs against it, so a
bit flip, a truncation or a replaced file is one CorruptCheckpoint line naming the file, never loaded.

A folder written before checksums existed ("legacy") has no manifest and no marker in its weights: it loads
after a structural check (sizes, headers), with a one-time "unverified" warning. New weights carry the marker
(safetensors metadata `mmpt_checksums`), so a deleted manifest is caught as corruption, not taken for legacy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmpt.errors import MmptError

MANIFEST = "checksums.json"
MARKER = "mmpt_checksums"  # safetensors metadata key: "this folder has a checksums.json"
MODEL_FILES = ("model.safetensors", "model.json")  # what loading a model reads
CHUNK = 1 << 20

log = logging.getLogger("mmpt.checkpoints")
_digests: dict[tuple[str, int, int, int, int, int], str] = {}  # stat identity -> sha256 (this process)
_said: set[str] = set()  # warnings already given in this process


class CorruptCheckpoint(MmptError):
    """A checkpoint file does not match what was written (bit flip, truncation, replaced or deleted file)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(
            f"checkpoint file {path} {reason}; it is not loaded: use another checkpoint "
            "(given a run folder, mmpt picks its newest intact one)"
        )


# ---- writing ----------------------------------------------------------------------------------------------


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: str | Path, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """fsync the files `names` (default: every file in `folder`), then write their checksums.json atomically.

    Returns the manifest's "files" mapping. The folder itself is fsynced last, so the rename is durable too.
    """
    folder = Path(folder)
    if names is None:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and _listed(p.name))
    files: dict[str, dict[str, Any]] = {}
    for name in names:
        path = folder / name
        fsync_path(path)
        files[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    tmp = folder / f".{MANIFEST}.tmp"
    with tmp.open("w") as f:
        json.dump({"algorithm": "sha256", "files": files}, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(folder / MANIFEST)
    fsync_path(folder)
    return files


def _listed(name: str) -> bool:
    return name != MANIFEST and not name.startswith(".")


def sha256_file(path: Path) -> str:
    """The file's sha256 (hex); remembered per (device, inode, size, mtime, ctime) for this process, so a file
    written and hashed here, or verified once, is not read again while unchanged."""
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        if len(_digests) > 256:
            _digests.clear()
        _digests[key] = digest
    return digest


# ---- checking ---------------------------------------------------------------------------------------------


def verify_files(folder: str | Path, names: Iterable[str] | None = MODEL_FILES) -> bool:
    """Check the files `names` of `folder` (None: all the manifest lists) against its checksums.json.

    True when verified; False for a legacy folder (no manifest, no marker) that passed the structural check
    (warned about once). Raises CorruptCheckpoint naming the first bad file.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    wanted = None if names is None else list(names)
    if not manifest_path.is_file():
        _check_legacy(folder, wanted)
        return False
    try:
        listed = json.loads(manifest_path.read_text())["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not a mapping")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptCheckpoint(
            manifest_path, f"is unreadable ({exc}); it cannot vouch for the folder"
        ) from None
    for name in listed if wanted is None else wanted:
        path = folder / name
        entry = listed.get(name)
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise CorruptCheckpoint(path, f"is not listed in {MANIFEST}")
        if not path.is_file():
            raise CorruptCheckpoint(path, "is missing")
        size = path.stat().st_size
        if size != entry.get("size", size):
            raise CorruptCheckpoint(
                path, f"is {size} bytes, {entry['size']} were written (truncated or changed)"
            )
        if sha256_file(path) != entry["sha256"]:
            raise CorruptCheckpoint(
                path, f"is corrupt: its sha256 differs from the one {MANIFEST} recorded when it was written"
            )
    return True


def _check_legacy(folder: Path, names: list[str] | None) -> None:
    """A folder without checksums.json: refuse it if its weights say it had one, else check its structure."""
    if names is None:
        names = (
            sorted(p.name for p in folder.iterdir() if p.is_file() and _listed(p.name))
            if folder.is_dir()
            else []
        )
    # the weights say whether the folder was saved with a manifest, whichever files are asked for
    weights = sorted({*(n for n in names if n.endswith(".safetensors")), *_weights_in(folder)})
    for name in weights:
        path = folder / name
        if path.is_file() and MARKER in safetensors_metadata(path):
            raise CorruptCheckpoint(
                folder / MANIFEST,
                f"is missing: {name} was saved with one (deleted?), so the folder is unverifiable",
            )
    for name in names:
        path = folder / name
        if not path.is_file():
            raise CorruptCheckpoint(path, "is missing")
        if name.endswith(".json"):
            try:
                json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CorruptCheckpoint(path, f"is not valid JSON ({exc})") from None
        elif name.endswith(".pt"):
            _check_zip(path)
    say_once(
        f"unverified:{folder.resolve()}",
        f"checkpoint {folder} has no {MANIFEST} (saved before mmpt checked checkpoints): loading it unverified",
    )


def _weights_in(folder: Path) -> list[str]:
    """The safetensors files of a folder (none when it is not one)."""
    return sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, after checking its header and that its size matches it."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, 100 << 20):
                raise ValueError(f"header length {n} does not fit the file")
            header = json.loads(f.read(n))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise CorruptCheckpoint(path, f"has a broken safetensors header ({exc})") from None
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise CorruptCheckpoint(path, f"is {size} bytes but its header describes {expected} (truncated?)")
    metadata = header.get("__metadata__") or {}
    return metadata if isinstance(metadata, dict) else {}


def _check_zip(path: Path) -> None:
    """A torch.save file is a zip archive with a CRC per entry: check them all."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CorruptCheckpoint(path, f"is not a readable torch file ({exc})") from None
    if bad is not None:
        raise CorruptCheckpoint(path, f"is corrupt (entry {bad} fails its CRC)")


def say_once(key: str, message: str) -> None:
    """Log a warning the first time `key` comes up in this process."""
    if key not in _said:
        _said.add(key)
        log.warning(message)
