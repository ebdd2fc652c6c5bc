"""Clotho v2.1 -> mmpt dataset.

Clotho (Drossos, Lipping, Virtanen 2020; https://zenodo.org/records/4783391) is 6,929 Freesound clips of 15-30 s,
each with five crowd-sourced captions of 8-20 words: development 3,839, validation 1,045 and evaluation 1,045
clips (the evaluation split is the retrieval and captioning benchmark). The official layout (the Zenodo files, the
three 7z archives extracted where they are):

    clotho/
      clotho_captions_development.csv    file_name,caption_1,caption_2,caption_3,caption_4,caption_5
      clotho_captions_validation.csv
      clotho_captions_evaluation.csv
      clotho_metadata_development.csv    file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license
      clotho_metadata_validation.csv     (ISO-8859-1 text in v2.x, read as such when it is not UTF-8)
      clotho_metadata_evaluation.csv
      development/*.wav  validation/*.wav  evaluation/*.wav      44.1 kHz mono

Rows: id (the file stem), audio, texts (the five captions; text is the first), split (development -> train,
validation -> val, evaluation -> test) and the metadata columns (each clip's Freesound licence in `license`,
uploader in `manufacturer`). A clip named in a captions CSV but absent keeps its row (`missing_file` in the
ingest report); a metadata line naming a file the captions CSV does not list is reported in a warning. Usage:

    python datasets/clotho.py clotho --out clotho.lance [--splits development,validation,evaluation]
    mmpt data info clotho.lance
    mmpt eval --run RUN --data clotho.lance --protocol clotho      # the evaluation split, all five captions

Published on the evaluation split: LAION-CLAP text->audio R@1/5/10 16.1 / 38.3 / 51.1, audio->text
22.7 / 48.5 / 60.8 (Wu et al., ICASSP 2023, Table 3).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmpt.store.recipes import (
    Card,
    add_arguments,
    comma_list,
    finish,
    layout_error,
    read_csv,
    report,
    require,
)

CARD = Card(
    name="Clotho v2.1",
    license="audio and metadata: each clip's Freesound licence (mostly CC BY / CC0, in the `license` column); "
    "captions: Tampere University licence (non-commercial, with attribution)",
    homepage="https://zenodo.org/records/4783391",
    modalities="audio, text (5 captions per clip)",
    citation="Drossos, Lipping, Virtanen, Clotho: an Audio Captioning Dataset, ICASSP 2020",
    notes="6,929 clips of 15-30 s (development 3,839 / validation 1,045 / evaluation 1,045), 5 captions each; "
    "published retrieval (evaluation): LAION-CLAP text->audio R@1 16.1, audio->text R@1 22.7",
)
SPLITS = {"development": "train", "validation": "val", "evaluation": "test"}
CAPTIONS = tuple(f"caption_{k}" for k in range(1, 6))
LAYOUT = "the Clotho v2.1 layout (clotho_captions_<split>.csv, clotho_metadata_<split>.csv, <split>/*.wav)"


def rows_of(
    root: Path, splits: tuple[str, ...] = tuple(SPLITS), warnings: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per line of each clotho_captions CSV, with its metadata line; absent clips stay as rows."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise SystemExit(f"error: unknown Clotho split {unknown[0]!r}; choose from {', '.join(SPLITS)}")
    rows = []
    for split in splits:
        captions = read_csv(require(root, f"clotho_captions_{split}.csv", LAYOUT), ("file_name", *CAPTIONS))
        meta_path = require(root, f"clotho_metadata_{split}.csv", LAYOUT)
        # UTF-8 when it is, else ISO-8859-1 (how the v2.x metadata files are written)
        metadata = {m["file_name"]: m for m in read_csv(meta_path, ("file_name",), fallback="iso-8859-1")}
        audio_dir = root / split
        if not audio_dir.is_dir():
            raise layout_error(audio_dir, root, LAYOUT + f" (extract clotho_audio_{split}.7z here)")
        listed = set()
        for line in captions:
            name = line["file_name"]
            listed.add(name)
            extra = {k: v for k, v in metadata.get(name, {}).items() if k and k != "file_name"}
            rows.append(
                {
                    "id": Path(name).stem,
                    "audio": audio_dir / name,
                    "texts": [line[c].strip() for c in CAPTIONS if (line[c] or "").strip()],
                    "split": SPLITS[split],
                    **extra,
                }
            )
        strays = [name for name in metadata if name not in listed]
        if strays and warnings is not None:
            warnings.append(
                f"{meta_path.name} lists {len(strays)} file(s) that clotho_captions_{split}.csv does not "
                f"(e.g. {strays[0]!r}); they have no captions and are left out"
            )
    return rows


def convert(
    root: Path,
    out: Path,
    splits: tuple[str, ...] = tuple(SPLITS),
    options: Any = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write the Clotho folder at `root` to `out` (.lance dataset or manifest); return the counts and warnings."""
    warnings: list[str] = []
    rows = rows_of(root, splits, warnings)
    return finish(rows, out, CARD, options=options, quiet=quiet, warnings=warnings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn the official Clotho v2.1 layout into an mmpt dataset.")
    parser.add_argument(
        "root", type=Path, help="the Clotho folder (the CSVs and the extracted split folders)"
    )
    add_arguments(parser)
    parser.add_argument(
        "--splits",
        default=",".join(SPLITS),
        help="comma-separated Clotho splits to take (default: development,validation,evaluation)",
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, tuple(comma_list(args.splits)), options=args, quiet=False)
    report("Clotho", args.out, counts)


if __name__ == "__main__":
    main()
