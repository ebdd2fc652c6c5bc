"""Conceptual Captions 3M (img2dataset webdataset shards) -> mmpt dataset (image, alt-text caption).

Conceptual Captions (Sharma, Ding, Goodman & Soricut 2018) is about 3.3M image URLs with a cleaned, hypernymed
alt-text caption each (3,318,333 train, 15,840 validation), distributed as two TSV files of caption<TAB>url
(Train_GCC-training.tsv, Validation_GCC-1.1.0-Validation.tsv). The images must be downloaded from the web, and
years on a large share of the URLs fail. Licence: the captions may be used freely for any purpose (Google LLC,
acknowledgement appreciated); each image stays under its web owner's terms. This recipe reads what img2dataset
(`--output_format webdataset`) writes, run once per TSV:

    ROOT/                              or   ROOT/train/00000.tar ...   ROOT/validation/00000.tar ...
      00000.tar                                (one img2dataset run per split; val/ is accepted for validation/)
        000000000.jpg                  the image (resized as img2dataset was told)
        000000000.txt                  the caption
        000000000.json                 {"url", "caption", "key", "status", "error_message", "width", "height",
                                        "original_width", "original_height", "exif", "sha256", ...}
      00000.parquet                    every url of the shard with its status (also the failed ones)
      00000_stats.json                 {"count", "successes", "failed_to_download", "failed_to_resize",
                                        "duration", "status_dict", ...}

Rows: one per downloaded image: id (`<shard>/<key>`, e.g. `train/00000/000000042`), image, text (the caption), the
json fields as metadata (url, status, width, height, ...), split from the train/ or validation/ folder, or, for
shards directly in ROOT, from --split (train by default; the rows are given that split through the ingest's split
ratios, 1,0,0 or 0,1,0). A corrupt member rejects its sample only (listed in the ingest report, the rest of the
shard is kept). The closing line adds the failed downloads counted from the *_stats.json files; the parquet files
are not read. Papers use CC3M for pretraining and report zero-shot and retrieval on other benchmarks. Usage:

    python datasets/cc3m.py cc3m_shards --out cc3m.lance [--split train|val]
    mmpt data info cc3m.lance

Citation: P. Sharma, N. Ding, S. Goodman, R. Soricut, Conceptual Captions: A Cleaned, Hypernymed, Image Alt-text
Dataset For Automatic Image Captioning, ACL 2018.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from mmpt.store.recipes import Card, add_arguments, ingest_into, layout_error, report
from mmpt.store.splits import ALIASES

CARD = Card(
    name="Conceptual Captions 3M",
    license="captions: free for any purpose (Google LLC, acknowledgement appreciated); images: their web owners' terms",
    homepage="https://ai.google.com/research/ConceptualCaptions/",
    modalities="image, text (alt-text caption)",
    citation=(
        "Sharma, Ding, Goodman & Soricut, Conceptual Captions: A Cleaned, Hypernymed, Image Alt-text Dataset For "
        "Automatic Image Captioning, ACL 2018"
    ),
    notes="3.3M image URLs with captions (3,318,333 train, 15,840 validation); images downloaded with img2dataset",
)
SPLIT_DIRS = {"train": "train", "validation": "val", "val": "val"}
RATIOS = {"train": (1.0, 0.0, 0.0), "val": (0.0, 1.0, 0.0)}
LAYOUT = "img2dataset webdataset output (NNNNN.tar with NNNNN_stats.json) in ROOT or in ROOT/train/, ROOT/validation/"
STAT_KEYS = ("count", "successes", "failed_to_download", "failed_to_resize")


def shard_folders(root: Path, split: str | None) -> list[tuple[Path, str]]:
    """The folders of shards and their split: ROOT's train/ and validation/ folders, else ROOT with --split."""
    if not root.is_dir():
        raise layout_error(root, root.parent, LAYOUT)
    nested = [(root / name, s) for name, s in SPLIT_DIRS.items() if any((root / name).glob("*.tar"))]
    flat = any(root.glob("*.tar"))
    if nested and flat:
        raise SystemExit(
            f"error: {root} holds shards both directly and in {nested[0][0].name}/; expected {LAYOUT}"
        )
    if nested:
        if split is not None:
            raise SystemExit(f"error: --split applies to shards directly in ROOT; {root} has split folders")
        return nested
    if not flat:
        raise layout_error(root / "00000.tar", root, LAYOUT)
    split = split or "train"
    # the split mmpt's webdataset reader takes from the folder holding the shards, when it is named like one
    named = ALIASES.get(root.name.lower())
    if named is not None and named != split:
        hint = f"pass --split {named}" if named in RATIOS else "move the shards"
        raise SystemExit(f"error: {root} lies in a folder read as the {named} split; {hint}")
    return [(root, split)]


def download_stats(folders: list[Path]) -> dict[str, Any]:
    """img2dataset's per-shard *_stats.json files summed: urls tried, successes, failed downloads and resizes."""
    totals = dict.fromkeys(STAT_KEYS, 0)
    files, unreadable = 0, []
    for folder in folders:
        for path in sorted(folder.glob("*_stats.json")):
            try:
                stats = json.loads(path.read_text(encoding="utf-8"))
                values = {k: int(stats.get(k) or 0) for k in STAT_KEYS}
            except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError):
                unreadable.append(path.name)
                continue
            files += 1
            for key, value in values.items():
                totals[key] += value
    return {**totals, "files": files, "unreadable": unreadable}


def stats_note(stats: dict[str, Any]) -> str:
    """The closing line's words on the download: failed urls, or that the stats files are missing."""
    if not stats["files"]:
        return "no *_stats.json files: failed downloads unknown"
    note = (
        f"{stats['failed_to_download']:,} of {stats['count']:,} urls failed to download"
        f" ({stats['failed_to_resize']:,} failed to resize; img2dataset stats of {stats['files']} shards)"
    )
    if stats["unreadable"]:
        note += f"; unreadable stats: {', '.join(stats['unreadable'][:3])}"
    return note


def convert(
    root: Path, out: Path, split: str | None = None, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Ingest the img2dataset shards below `root` into the `.lance` folder `out`; return the counts."""
    if split is not None and split not in RATIOS:
        raise SystemExit(f"error: --split must be train or val, got {split}")
    folders = shard_folders(root, split)
    shards = {str(tar): name for folder, name in folders for tar in sorted(folder.glob("*.tar"))}
    ratios = RATIOS[folders[0][1]] if len(folders) == 1 and folders[0][0] == root else None
    result = ingest_into(list(shards), out, CARD, options=options, quiet=quiet, split_ratios=ratios)
    splits = Counter(result.dataset.stats()["splits"])
    for rejected in result.rejected:  # rejected samples counted in their shard's split, as the rows read
        source = str(rejected.get("source") or "")
        splits[
            next((s for tar, s in shards.items() if source == tar or source.startswith(tar + ":")), "unknown")
        ] += 1
    stats = download_stats([folder for folder, _ in folders])
    return {
        "rows": result.read,
        "splits": dict(sorted(splits.items())),
        "written": result.written,
        "rejected": len(result.rejected),
        "shards": len(shards),
        "download": stats,
        "notes": [stats_note(stats)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn img2dataset CC3M shards into an mmpt dataset.")
    parser.add_argument(
        "root", type=Path, help="the img2dataset output folder (NNNNN.tar, or train/ validation/)"
    )
    add_arguments(parser)
    parser.add_argument(
        "--split",
        choices=sorted(RATIOS),
        default=None,
        help="split of shards directly in ROOT (default train)",
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.split, options=args, quiet=False)
    report("CC3M", args.out, counts)


if __name__ == "__main__":
    main()
