"""Read a folder tree as input rows: files sharing a stem in one folder form a row, labels and splits come from
the folder names."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmpt.store.source import Source
from mmpt.store.splits import normalise_split
from mmpt.store.video import VIDEO_EXTS

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
TEXT_EXTS = (".txt",)


def folder_source(root: Path, *, follow_symlinks: bool = False) -> Source:
    """A folder tree: files sharing a stem in one folder form a row (image, audio, .txt caption, or a video that
    gives the image and audio the row lacks); the label is the first sub-folder's name, or the second one's
    when the first level is train/val/test.

    Row ids are the relative path without extension, in Unicode NFC. Symlinked folders are walked only with
    `follow_symlinks` (each real folder once); symlinked files are checked when read.
    """
    root = root.resolve()
    top = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    split_layout = bool(top) and all(normalise_split(name) is not None for name in top)

    def groups() -> Iterator[tuple[str, dict[str, Any]]]:
        visited: set[str] = set()
        for folder, dirs, files in os.walk(root, followlinks=follow_symlinks):
            real = os.path.realpath(folder)
            if real in visited:  # a link back to a folder already walked: no loops, no duplicate rows
                dirs[:] = []
                continue
            visited.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            by_stem: dict[str, list[str]] = {}
            for name in sorted(files):
                if name.startswith("."):
                    continue
                by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
            rel = Path(folder).relative_to(root)
            for stem, names in by_stem.items():
                row_id = unicodedata.normalize("NFC", (rel / stem).as_posix())
                yield row_id, _group(Path(folder), rel, names, split_layout)

    def chunks(size: int) -> Iterator[list[dict[str, Any]]]:
        out: list[dict[str, Any]] = []
        for row, (row_id, group) in enumerate(groups()):
            out.append({"row": row, "id": row_id, **group})
            if len(out) >= size:
                yield out
                out = []
        if out:
            yield out

    return Source(name=root.name, metadata={}, total=None, chunks=chunks, root=str(root))


def _group(folder: Path, rel: Path, names: list[str], split_layout: bool) -> dict[str, Any]:
    image = audio = text_path = video = None
    for name in names:
        ext = os.path.splitext(name)[1].lower()
        path = str(folder / name)
        if ext in IMAGE_EXTS and image is None:
            image = path
        elif ext in AUDIO_EXTS and audio is None:
            audio = path
        elif ext in TEXT_EXTS and text_path is None:
            text_path = path
        elif ext in VIDEO_EXTS and video is None:
            video = path
    parts = rel.parts
    split = parts[0] if split_layout and parts else None
    label_parts = parts[1:] if split_layout else parts
    return {
        "text": None,
        "text_path": text_path,
        "image": image,
        "audio": audio,
        "label": label_parts[0] if label_parts else None,
        "split": split,
        "source": image or audio or video or text_path or str(folder / names[0]),
        "meta": {},
        "video": None if video is None else {"ref": video},
    }
