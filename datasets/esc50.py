"""ESC-50 -> mmpt manifest.

ESC-50 (Piczak 2015; https://github.com/karolpiczak/ESC-50, CC BY-NC 3.0) is 2,000 five-second clips in 50
environmental-sound classes, 40 per class, pre-arranged in 5 folds. Its official layout:

    ESC-50-master/
      audio/1-100032-A-0.wav ...           44.1 kHz mono PCM16 WAV
      meta/esc50.csv                       filename,fold,target,category,esc10,src_file,take

This writes a manifest CSV that `mmpt ingest` reads: id (file stem), audio (path relative to the manifest),
text ("the sound of chirping birds"), label ("chirping birds"), split (by fold), and the other columns
of esc50.csv as metadata. Usage:

    python datasets/esc50.py ESC-50-master --out esc50/manifest.csv [--val-fold 4] [--test-fold 5]
    mmpt ingest esc50/manifest.csv --out esc50.lance

Folds are the dataset's own grouping (clips cut from one recording share a fold), so splitting by fold keeps
near-duplicates out of the held-out splits. Pass --val-fold 0 for train/test only.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

META = Path("meta") / "esc50.csv"
AUDIO = Path("audio")
REQUIRED = ("filename", "fold", "target", "category")


def caption(category: str) -> str:
    """A plain caption for a class: "chirping_birds" -> "the sound of chirping birds"."""
    return f"the sound of {category.replace('_', ' ')}"


def split_of(fold: int, val_fold: int, test_fold: int) -> str:
    """train / val / test for one of ESC-50's five folds."""
    if fold == test_fold:
        return "test"
    if fold == val_fold:
        return "val"
    return "train"


def convert(root: Path, out: Path, val_fold: int = 4, test_fold: int = 5) -> dict[str, int]:
    """Write the manifest for an ESC-50 folder; return counts (rows, per split, audio files not found)."""
    meta = root / META
    if not meta.is_file():
        raise SystemExit(
            f"error: {meta} not found; expected the official ESC-50 layout (audio/, meta/esc50.csv)"
        )
    if val_fold == test_fold:
        raise SystemExit("error: --val-fold and --test-fold must differ")
    with meta.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing_cols = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise SystemExit(
                f"error: {meta} lacks columns {', '.join(missing_cols)}; found {reader.fieldnames}"
            )
        rows = list(reader)
    if not rows:
        raise SystemExit(f"error: {meta} has no rows")

    out.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in rows[0] if c not in ("filename", "category")]
    counts = {"rows": 0, "train": 0, "val": 0, "test": 0, "missing_audio": 0}
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "audio", "text", "label", "split", *extra])
        for row in rows:
            audio = root / AUDIO / row["filename"]
            if not audio.is_file():
                counts["missing_audio"] += 1  # still listed: ingest reports it as a missing file
            split = split_of(int(row["fold"]), val_fold, test_fold)
            label = row["category"].replace("_", " ")
            rel = Path(os.path.relpath(audio.resolve(), out.parent.resolve())).as_posix()
            writer.writerow(
                [
                    Path(row["filename"]).stem,
                    rel,
                    caption(row["category"]),
                    label,
                    split,
                    *(row[c] for c in extra),
                ]
            )
            counts["rows"] += 1
            counts[split] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn the official ESC-50 layout into an mmpt manifest CSV.")
    parser.add_argument("root", type=Path, help="the ESC-50 folder (holding audio/ and meta/esc50.csv)")
    parser.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    parser.add_argument("--val-fold", type=int, default=4, help="fold used for validation (0: none)")
    parser.add_argument("--test-fold", type=int, default=5, help="fold used for testing")
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.val_fold, args.test_fold)
    print(
        f"wrote {args.out}: {counts['rows']} rows (train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']})"
        + (f"; {counts['missing_audio']} audio files not found" if counts["missing_audio"] else ""),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
