"""UrbanSound8K -> mmpt dataset.

UrbanSound8K (Salamon, Jacoby, Bello 2014; https://urbansounddataset.weebly.com/urbansound8k.html, CC BY-NC 3.0)
is 8,732 labelled excerpts (up to 4 s) of Freesound field recordings in 10 urban classes (air_conditioner,
car_horn, children_playing, dog_bark, drilling, engine_idling, gun_shot, jackhammer, siren, street_music),
pre-arranged in 10 folds. Its official layout (the archive unpacked):

    UrbanSound8K/
      audio/fold1/100032-3-0-0.wav ... audio/fold10/...     WAV, sample rate and channels as recorded
      metadata/UrbanSound8K.csv        slice_file_name,fsID,start,end,salience,fold,classID,class

Rows: id (file stem), audio, text ("the sound of dog bark"), label ("dog bark"), split (by fold) and the other
columns of UrbanSound8K.csv as metadata (`fold` is what `mmpt eval --protocol urbansound8k` reads). Usage:

    python datasets/urbansound8k.py UrbanSound8K --out us8k.lance [--val-fold 9] [--test-fold 10]
    mmpt data info us8k.lance
    mmpt eval --run RUN --data us8k.lance --protocol urbansound8k      # zero-shot, every fold

The authors ask for results as 10-fold cross-validation over their folds (slices of one recording share a
fold), never a reshuffle; splitting by fold keeps near-duplicates out of the held-out splits. Pass --val-fold 0
for train/test only. Published zero-shot accuracy: LAION-CLAP 77.0% (mean over the 10 folds).
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
    name="UrbanSound8K",
    license="CC BY-NC 3.0",
    homepage="https://urbansounddataset.weebly.com/urbansound8k.html",
    modalities="audio, text (class caption)",
    citation="Salamon, Jacoby, Bello, A Dataset and Taxonomy for Urban Sound Research, ACM MM 2014",
    notes="8,732 clips up to 4 s, 10 classes, 10 folds; published zero-shot: LAION-CLAP 77.0% (10-fold mean)",
)
LAYOUT = "the official UrbanSound8K layout (audio/fold1..fold10/*.wav, metadata/UrbanSound8K.csv)"
COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")


def rows_of(root: Path, val_fold: int = 9, test_fold: int = 10) -> list[dict[str, Any]]:
    """One row per line of metadata/UrbanSound8K.csv, the clip listed even when its file is absent."""
    if val_fold == test_fold:
        raise SystemExit("error: --val-fold and --test-fold must differ")
    meta = require(root, Path("metadata") / "UrbanSound8K.csv", LAYOUT)
    audio_dir = require(root, "audio", LAYOUT)
    rows = []
    for row in read_csv(meta, COLUMNS):
        try:
            fold = int(row["fold"])
        except ValueError:
            raise SystemExit(f"error: {meta} gives {row['slice_file_name']} fold {row['fold']!r}") from None
        extra = {k: v for k, v in row.items() if k not in ("slice_file_name", "class", "fold")}
        rows.append(
            {
                "id": Path(row["slice_file_name"]).stem,
                "audio": audio_dir / f"fold{fold}" / row["slice_file_name"],
                "text": class_caption(row["class"]),
                "label": row["class"].replace("_", " "),
                "split": fold_split(fold, val_fold, test_fold),
                "fold": fold,
                **extra,
            }
        )
    return rows


def convert(
    root: Path, out: Path, val_fold: int = 9, test_fold: int = 10, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Write the UrbanSound8K folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    return finish(rows_of(root, val_fold, test_fold), out, CARD, options=options, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn the official UrbanSound8K layout into an mmpt dataset."
    )
    parser.add_argument("root", type=Path, help="the UrbanSound8K folder (holding audio/ and metadata/)")
    add_arguments(parser)
    parser.add_argument("--val-fold", type=int, default=9, help="fold used for validation (0: none)")
    parser.add_argument("--test-fold", type=int, default=10, help="fold used for testing")
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.val_fold, args.test_fold, options=args, quiet=False)
    report("UrbanSound8K", args.out, counts)


if __name__ == "__main__":
    main()
