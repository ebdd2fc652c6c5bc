"""COCO Captions 2017 -> mmpt dataset (image, all its captions).

MS-COCO Captions (Chen et al. 2015) gives each of 123,287 images (118,287 in train2017, 5,000 in val2017) about
five human captions (616,767 in all). Licence: the annotations CC BY 4.0; the images keep the Flickr licences
listed per image in the annotation files (stored here as `image_license`). Official layout (train2017.zip,
val2017.zip, annotations_trainval2017.zip unpacked in one folder):

    COCO/
      annotations/captions_train2017.json   {"licenses": [{"id", "name", "url"}],
      annotations/captions_val2017.json      "images": [{"id", "file_name", "width", "height", "license", ...}],
                                              "annotations": [{"image_id", "id", "caption"}]}
      train2017/000000000009.jpg ...
      val2017/000000000139.jpg ...

Rows: one per image: id (the file stem), image, texts (all its captions, in annotation order; `text` is the
first), split, and metadata coco_id, width, height, image_license, coco_split (train2017 / val2017). Splits:
train2017 -> train, val2017 -> val by default. `--karpathy dataset_coco.json` (Karpathy's split file from
caption_datasets.zip: {"images": [{"filename", "cocoid", "split": train|restval|val|test, "sentences"}]})
assigns Karpathy's splits by cocoid instead (restval -> train: 113,287 / 5,000 / 5,000), so that `mmpt eval
--protocol coco` finds the 5k test images in `test`. A caption naming an image that is not in the file, a
Karpathy image absent from the annotations and an annotated image absent from the Karpathy file (kept in its 2017
split) are counted in the closing line. Published 5k test retrieval (CLIP ViT-L/14@336px zero-shot, Radford et
al. 2021): image -> text R@1/5/10 58.4 / 81.5 / 88.1, text -> image 37.8 / 62.4 / 72.2. Usage:

    python datasets/coco_captions.py COCO --out coco.lance [--karpathy dataset_coco.json]
    mmpt data info coco.lance

(`--out coco/manifest.csv` writes only the manifest, for `mmpt ingest` later.)

Citations: T.-Y. Lin et al., Microsoft COCO: Common Objects in Context, ECCV 2014; X. Chen et al., Microsoft COCO
Captions: Data Collection and Evaluation Server, arXiv:1504.00325, 2015; A. Karpathy, L. Fei-Fei, Deep
Visual-Semantic Alignments for Generating Image Descriptions, CVPR 2015 (the split).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from mmpt.store.recipes import (
    KARPATHY_SPLITS,
    Card,
    add_arguments,
    finish,
    read_json,
    read_karpathy,
    report,
    require,
)

CARD = Card(
    name="COCO Captions 2017",
    license="annotations CC BY 4.0; images: Flickr terms of use (per-image licence in image_license)",
    homepage="https://cocodataset.org/#download",
    modalities="image, text (about 5 captions per image)",
    citation=(
        "Lin et al., Microsoft COCO: Common Objects in Context, ECCV 2014; Chen et al., Microsoft COCO Captions, "
        "arXiv:1504.00325"
    ),
    notes="123,287 images, 616,767 captions; Karpathy 5k test: CLIP ViT-L/14@336px I->T R@1 58.4, T->I R@1 37.8",
)
SPLITS = {"train2017": "train", "val2017": "val"}
LAYOUT = "the official COCO 2017 layout (annotations/captions_{train,val}2017.json, train2017/, val2017/)"


def karpathy_splits(path: Path) -> dict[int, str]:
    """Karpathy's dataset_coco.json as {cocoid: train / val / test} (restval -> train)."""
    return {int(image["cocoid"]): KARPATHY_SPLITS[image["split"]] for image in read_karpathy(path, "cocoid")}


def rows_of(root: Path, karpathy: Path | None = None, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per image of captions_{train,val}2017.json with all its captions, listed even when its file is
    absent; ids the files do not agree on are counted in `notes`."""
    resplit = karpathy_splits(karpathy) if karpathy else None
    rows, orphans, unsplit, seen = [], 0, 0, set()
    for folder, split in SPLITS.items():
        path = require(root, Path("annotations") / f"captions_{folder}.json", LAYOUT)
        images_dir = require(root, folder, LAYOUT)
        data = read_json(path, "images", "annotations")
        licences = {
            lic.get("id"): lic.get("name") for lic in data.get("licenses") or [] if isinstance(lic, dict)
        }
        try:
            captions: dict[int, list[str]] = defaultdict(list)
            for note in data["annotations"]:
                captions[int(note["image_id"])].append(str(note["caption"]).strip())
            ids = {int(image["id"]) for image in data["images"]}
            names = {int(image["id"]): str(image["file_name"]) for image in data["images"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise SystemExit(f"error: {path} has an image or annotation without a valid {exc}") from None
        orphans += sum(len(texts) for image_id, texts in captions.items() if image_id not in ids)
        for image in data["images"]:
            coco_id = int(image["id"])
            seen.add(coco_id)
            row_split = split
            if resplit is not None:
                unsplit += coco_id not in resplit
                row_split = resplit.get(coco_id, split)
            rows.append(
                {
                    "id": Path(names[coco_id]).stem,
                    "image": images_dir / names[coco_id],
                    "texts": captions.get(coco_id) or None,
                    "split": row_split,
                    "coco_id": coco_id,
                    "width": image.get("width"),
                    "height": image.get("height"),
                    "image_license": licences.get(image.get("license")),
                    "coco_split": folder,
                }
            )
    absent = len(set(resplit) - seen) if resplit is not None else 0
    said = [
        f"{orphans} captions name an image not in their annotation file" if orphans else "",
        f"{absent} Karpathy images are not in the annotations" if absent else "",
        f"{unsplit} images are not in the Karpathy file (kept in their 2017 split)" if unsplit else "",
    ]
    if notes is not None:
        notes.extend(n for n in said if n)
    return rows


def convert(
    root: Path, out: Path, karpathy: Path | None = None, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Write the COCO 2017 folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    notes: list[str] = []
    rows = rows_of(root, karpathy, notes)
    return finish(rows, out, CARD, options=options, quiet=quiet, notes=notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn the official COCO Captions 2017 layout into an mmpt dataset."
    )
    parser.add_argument(
        "root", type=Path, help="the COCO folder (holding annotations/, train2017/, val2017/)"
    )
    add_arguments(parser)
    parser.add_argument(
        "--karpathy", type=Path, default=None, help="Karpathy's dataset_coco.json: assign train / val / test"
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.karpathy, options=args, quiet=False)
    report("COCO Captions", args.out, counts)


if __name__ == "__main__":
    main()
