"""SpokenCOCO -> mmpt dataset (COCO image, spoken caption, its written text).

SpokenCOCO (Hsu, Harwath, Miller, Song & Glass 2021) is about 600,000 recordings of Amazon Mechanical Turk
speakers reading the MS-COCO 2014 captions aloud (over 700 hours, 16 kHz WAV): five spoken captions for each of
the 123,287 COCO images of the Karpathy split. Licence: the spoken captions CC BY-SA 4.0 (MIT SLS); the COCO
captions CC BY 4.0; the images remain under their Flickr terms of use. The images are not in the archive: take
them from the COCO 2014 download (train2014/, val2014/). Official layout:

    SpokenCOCO/
      SpokenCOCO_train.json      {"data": [{"image": "train2014/COCO_train2014_000000000009.jpg",
      SpokenCOCO_val.json                   "captions": [{"text": "A BOWL OF FOOD ...", "speaker": "m1...",
                                                          "uttid": "m1...-3A...._9_181",
                                                          "wav": "wavs/train/0/<uttid>.wav"},
                                                         ...]}, ...]}
      wavs/train/<n>/*.wav, wavs/val/<n>/*.wav
    COCO 2014 images: train2014/COCO_train2014_*.jpg, val2014/COCO_val2014_*.jpg

Rows: one per utterance (the corpus pairs each recording with its own caption): id (uttid), image, audio, text
(the caption as SpokenCOCO gives it, upper case), split (SpokenCOCO_train.json -> train, SpokenCOCO_val.json ->
val: the Karpathy-style split as SpokenCOCO ships it, both may name train2014 and val2014 images), and metadata
image_id (the image stem, shared by its five rows) and speaker. `--karpathy dataset_coco.json` (Karpathy's
split file, from caption_datasets.zip) re-assigns splits by image file name (restval -> train, so the 5k test
images become `test`, as papers on SpokenCOCO evaluate); images absent from it keep the json's split and are
counted in the closing line. Papers report speech <-> image retrieval R@1/5/10 on the Karpathy 5k test images
(25k utterances); e.g. FaST-VGS+ (Peng & Harwath 2022). Usage:

    python datasets/spokencoco.py SpokenCOCO --images COCO2014 --out spokencoco.lance \\
        [--karpathy dataset_coco.json]
    mmpt data info spokencoco.lance

--images is the folder holding train2014/ and val2014/ (default: the folder above SpokenCOCO/). `--out
spokencoco/manifest.csv` writes only the manifest, for `mmpt ingest` later.

Citation: W.-N. Hsu, D. Harwath, T. Miller, C. Song, J. Glass, Text-Free Image-to-Speech Synthesis Using Learned
Segmental Units, ACL 2021.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmpt.store.recipes import (
    KARPATHY_SPLITS,
    Card,
    add_arguments,
    finish,
    layout_error,
    read_json,
    read_karpathy,
    report,
    require,
)

CARD = Card(
    name="SpokenCOCO",
    license="spoken captions CC BY-SA 4.0; COCO captions CC BY 4.0; images: Flickr terms of use",
    homepage="https://groups.csail.mit.edu/sls/downloads/placesaudio/",
    modalities="image, audio (spoken caption), text (the caption read)",
    citation=(
        "Hsu, Harwath, Miller, Song & Glass, Text-Free Image-to-Speech Synthesis Using Learned Segmental Units, "
        "ACL 2021"
    ),
    notes="about 605k spoken captions of 123k COCO 2014 images; images from the COCO 2014 download",
)
JSONS = {"train": "SpokenCOCO_train.json", "val": "SpokenCOCO_val.json"}
LAYOUT = "the official SpokenCOCO layout (SpokenCOCO_train.json, SpokenCOCO_val.json, wavs/)"
IMAGES_LAYOUT = "the COCO 2014 images (--images: the folder holding train2014/ and val2014/)"


def karpathy_splits(path: Path) -> dict[str, str]:
    """Karpathy's split file as {image file name: train / val / test} (restval -> train)."""
    return {image["filename"]: KARPATHY_SPLITS[image["split"]] for image in read_karpathy(path, "filename")}


def rows_of(
    root: Path, images: Path | None = None, karpathy: Path | None = None, notes: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per caption (utterance) of SpokenCOCO_{train,val}.json, listed even when its wav or image is
    absent; images the Karpathy file lacks are counted in `notes`."""
    images = images or root.resolve().parent
    require(root, "wavs", LAYOUT)
    resplit = karpathy_splits(karpathy) if karpathy else None
    rows, folders, unsplit = [], set(), 0
    for split, name in JSONS.items():
        path = require(root, name, LAYOUT)
        for item in read_json(path, "data")["data"]:
            if (
                not isinstance(item, dict)
                or "image" not in item
                or not isinstance(item.get("captions"), list)
            ):
                raise SystemExit(f'error: {path} has an entry without "image" and a "captions" list')
            image = Path(item["image"])
            folders.add(image.parts[0] if len(image.parts) > 1 else "")
            row_split = split
            if resplit is not None:
                unsplit += image.name not in resplit
                row_split = resplit.get(image.name, split)
            for caption in item["captions"]:
                if not isinstance(caption, dict) or "uttid" not in caption or "wav" not in caption:
                    raise SystemExit(
                        f'error: {path} has a caption without "uttid" and "wav" ({item["image"]})'
                    )
                rows.append(
                    {
                        "id": caption["uttid"],
                        "image": images / image,
                        "audio": root / caption["wav"],
                        "text": caption.get("text"),
                        "split": row_split,
                        "image_id": image.stem,
                        "speaker": caption.get("speaker"),
                    }
                )
    for folder in sorted(folders):
        if not (images / folder).is_dir():
            raise layout_error(images / folder, images, IMAGES_LAYOUT)
    if unsplit and notes is not None:
        notes.append(f"{unsplit} images are not in the Karpathy file (kept in the json's split)")
    return rows


def convert(
    root: Path,
    out: Path,
    images: Path | None = None,
    karpathy: Path | None = None,
    options: Any = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write the SpokenCOCO folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    notes: list[str] = []
    rows = rows_of(root, images, karpathy, notes)
    return finish(rows, out, CARD, options=options, quiet=quiet, notes=notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn the official SpokenCOCO layout into an mmpt dataset.")
    parser.add_argument("root", type=Path, help="the SpokenCOCO folder (holding SpokenCOCO_*.json and wavs/)")
    add_arguments(parser)
    parser.add_argument(
        "--images", type=Path, default=None, help="the folder holding train2014/ and val2014/ (ROOT/..)"
    )
    parser.add_argument(
        "--karpathy", type=Path, default=None, help="Karpathy's dataset_coco.json: assign train / val / test"
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.images, args.karpathy, options=args, quiet=False)
    report("SpokenCOCO", args.out, counts)


if __name__ == "__main__":
    main()
