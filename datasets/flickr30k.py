"""Flickr30k (Karpathy splits) -> mmpt dataset (image, its five captions).

Flickr30k (Young, Lai, Hodosh & Hockenmaier 2014) is 31,783 Flickr photos of everyday scenes with five
crowd-sourced captions each (158,915 in all). The standard benchmark split is Karpathy's: 29,000 train, 1,014
val and 1,000 test images. Licence: the captions for research use under the University of Illinois' Flickr30k
terms; the photos remain under their owners' Flickr terms of use. The images come from flickr30k-images.tar.gz,
the split from Karpathy's caption_datasets.zip:

    ROOT/
      flickr30k-images/1000092795.jpg ...      (flickr30k_images/ is accepted too)
      dataset_flickr30k.json                   {"images": [{"filename": "1000092795.jpg", "imgid": 0,
                                                            "split": "train"|"val"|"test",
                                                            "sentences": [{"raw": "Two young guys ...", ...}, ...]},
                                                           ...], "dataset": "flickr30k"}

Rows: one per image: id (the file stem), image, texts (its five captions; `text` is the first), split (Karpathy's;
restval, if present, -> train) and metadata imgid. `mmpt eval --protocol flickr30k` evaluates the 1k test split.
Published 1k test retrieval (CLIP ViT-L/14@336px zero-shot, Radford et al. 2021): image -> text R@1/5/10
88.0 / 98.7 / 99.4, text -> image 68.7 / 90.6 / 95.2. Usage:

    python datasets/flickr30k.py ROOT --out flickr30k.lance [--karpathy dataset_flickr30k.json]
    mmpt data info flickr30k.lance

(--karpathy points at the split file when it is not in ROOT; `--out flickr30k/manifest.csv` writes only the
manifest, for `mmpt ingest` later.)

Citations: P. Young, A. Lai, M. Hodosh, J. Hockenmaier, From image descriptions to visual denotations, TACL 2,
2014; A. Karpathy, L. Fei-Fei, Deep Visual-Semantic Alignments for Generating Image Descriptions, CVPR 2015.
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
    read_karpathy,
    report,
    require,
)

CARD = Card(
    name="Flickr30k",
    license="captions: Flickr30k research-use terms (University of Illinois); images: Flickr terms of use",
    homepage="https://shannon.cs.illinois.edu/DenotationGraph/",
    modalities="image, text (5 captions per image)",
    citation=(
        "Young, Lai, Hodosh & Hockenmaier, From image descriptions to visual denotations, TACL 2014; Karpathy & "
        "Fei-Fei, Deep Visual-Semantic Alignments for Generating Image Descriptions, CVPR 2015 (split)"
    ),
    notes="31,783 images, 158,915 captions; Karpathy 1k test: CLIP ViT-L/14@336px I->T R@1 88.0, T->I R@1 68.7",
)
IMAGE_DIRS = ("flickr30k-images", "flickr30k_images")
SPLIT_FILE = "dataset_flickr30k.json"
LAYOUT = "flickr30k-images/*.jpg and Karpathy's dataset_flickr30k.json"


def rows_of(root: Path, karpathy: Path | None = None) -> list[dict[str, Any]]:
    """One row per image of the Karpathy file with its captions, listed even when its jpg is absent."""
    images_dir = next((root / name for name in IMAGE_DIRS if (root / name).is_dir()), None)
    if images_dir is None:
        raise layout_error(root / IMAGE_DIRS[0], root, LAYOUT)
    split_file = karpathy or require(root, SPLIT_FILE, LAYOUT)
    rows = []
    for image in read_karpathy(split_file, "filename", "sentences"):
        if not isinstance(image["sentences"], list):
            raise SystemExit(f'error: {split_file}: "sentences" of {image["filename"]} is not a list')
        texts = [str(s.get("raw", "")).strip() for s in image["sentences"] if isinstance(s, dict)]
        rows.append(
            {
                "id": Path(image["filename"]).stem,
                "image": images_dir / image["filename"],
                "texts": [t for t in texts if t] or None,
                "split": KARPATHY_SPLITS[image["split"]],
                "imgid": image.get("imgid"),
            }
        )
    return rows


def convert(
    root: Path, out: Path, karpathy: Path | None = None, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Write the Flickr30k folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    return finish(rows_of(root, karpathy), out, CARD, options=options, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn Flickr30k with Karpathy's split into an mmpt dataset.")
    parser.add_argument(
        "root", type=Path, help="the folder holding flickr30k-images/ (and dataset_flickr30k.json)"
    )
    add_arguments(parser)
    parser.add_argument(
        "--karpathy", type=Path, default=None, help=f"Karpathy's split file (default: ROOT/{SPLIT_FILE})"
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.karpathy, options=args, quiet=False)
    report("Flickr30k", args.out, counts)


if __name__ == "__main__":
    main()
