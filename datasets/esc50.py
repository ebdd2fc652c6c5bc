"""ESC-50 -> mmpt dataset.

ESC-50 (Piczak 2015; https://github.com/karolpiczak/ESC-50, CC BY-NC 3.0) is 2,000 five-second clips in 50
environmental-sound classes, 40 per class, pre-arranged in 5 folds. Its official layout:

    ESC-50-master/
      audio/1-100032-A-0.wav ...           44.1 kHz mono PCM16 WAV
      meta/esc50.csv                       filename,fold,target,category,esc10,src_file,take

Rows: id (file stem), audio, text ("the sound of chirping birds"), label ("chirping birds"), split (by fold),
and the other columns of esc50.csv as metadata. Usage:

    python datasets/esc50.py ESC-50-master --out esc50.lance [--val-fold 4] [--test-fold 5]
    mmpt data info esc50.lance

(`--out esc50/manifest.csv` writes only the manifest, for `mmpt ingest` later.) Folds are the dataset's own
grouping (clips cut from one recording share a fold), so splitting by fold keeps near-duplicates out of the
held-out splits. Pass --val-fold 0 for train/test only. `mmpt eval --protocol esc50` runs the 5-fold zero-shot.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmpt.store.recipes import (
    Card,
    add_arguments,
    class_caption,
    finish,
    fold_split,
    read_csv,
    report,
    require,
)

CARD = Card(
    name="ESC-50",
    license="CC BY-NC 3.0",
    homepage="https://github.com/karolpiczak/ESC-50",
    modalities="audio, text (class caption)",
    citation="Piczak, ESC: Dataset for Environmental Sound Classification, ACM MM 2015",
    notes="2,000 clips of 5 s, 50 classes, 5 folds; published zero-shot: LAION-CLAP 91.0% (5-fold mean)",
)
LAYOUT = "the official ESC-50 layout (audio/*.wav, meta/esc50.csv)"


def rows_of(root: Path, val_fold: int = 4, test_fold: int = 5) -> list[dict[str, Any]]:
    """One row per line of meta/esc50.csv, the clip listed even when its file is absent."""
    if val_fold == test_fold:
        raise SystemExit("error: --val-fold and --test-fold must differ")
    meta = require(root, Path("meta") / "esc50.csv", LAYOUT)
    audio_dir = require(root, "audio", LAYOUT)
    rows = []
    for row in read_csv(meta, ("filename", "fold", "target", "category")):
        label = row["category"].replace("_", " ")
        extra = {k: v for k, v in row.items() if k not in ("filename", "category")}
        rows.append(
            {
                "id": Path(row["filename"]).stem,
                "audio": audio_dir / row["filename"],
                "text": class_caption(row["category"]),
                "label": label,
                "split": fold_split(int(row["fold"]), val_fold, test_fold),
                **extra,
            }
        )
    return rows


def convert(
    root: Path, out: Path, val_fold: int = 4, test_fold: int = 5, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Write the ESC-50 folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    return finish(rows_of(root, val_fold, test_fold), out, CARD, options=options, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn the official ESC-50 layout into an mmpt dataset.")
    parser.add_argument("root", type=Path, help="the ESC-50 folder (holding audio/ and meta/esc50.csv)")
    add_arguments(parser)
    parser.add_argument("--val-fold", type=int, default=4, help="fold used for validation (0: none)")
    parser.add_argument("--test-fold", type=int, default=5, help="fold used for testing")
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.val_fold, args.test_fold, options=args, quiet=False)
    report("ESC-50", args.out, counts)


if __name__ == "__main__":
    main()
