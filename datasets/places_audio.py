"""Places Audio Captions (400k) -> mmpt dataset (Places205 image, spoken caption, its ASR transcript).

The Places Audio Caption Corpus (Harwath et al. 2016-2018) is about 400,000 free-form spoken descriptions of
Places205 scene images, recorded by Amazon Mechanical Turk speakers (16 kHz WAV, about 10 s each). The text is
the output of a speech recogniser (`asr_text`), not a human transcript, so it has recognition errors. Licence:
the spoken captions under MIT SLS's Places Audio terms (see the download page); the images under the Places205
terms (non-commercial research and education). The images are not in the archive: take them from the Places205
download (--images). Official layout:

    PlacesAudio_400k_distro/
      metadata/train.json     {"image_base_path": "...", "audio_base_path": "...",
      metadata/val.json        "data": [{"uttid": "A1...-GSUN_...", "speaker": "A1...", "asr_text": "a large ...",
                                         "wav": "wavs/18/utterance_265540.wav", "image": "s/shower/gsun_....jpg"}]}
      wavs/<n>/utterance_<k>.wav
    Places205 images: <letter>/<category>/gsun_<hash>.jpg (e.g. images256/ from the Places205 archive)

Rows: one per utterance: id (uttid), image, audio, text (asr_text), split (metadata/train.json -> train,
metadata/val.json -> val: the corpus's own split, 1,000 utterances in val), and metadata image_id (the image
stem) and speaker. The json's image_base_path / audio_base_path name the authors' machine: wavs are read below
ROOT, images below --images (default: image_base_path when that folder exists here). Papers report speech <->
image retrieval R@1/5/10 on the 1,000 val pairs (DAVEnet and its successors, Harwath et al. ECCV 2018). Usage:

    python datasets/places_audio.py PlacesAudio_400k_distro --images images256 --out places_audio.lance
    mmpt data info places_audio.lance

(`--out places_audio/manifest.csv` writes only the manifest, for `mmpt ingest` later.)

Citations: D. Harwath, A. Recasens, D. Suris, G. Chuang, A. Torralba, J. Glass, Jointly Discovering Visual
Objects and Spoken Words from Raw Sensory Input, ECCV 2018; D. Harwath, A. Torralba, J. Glass, Unsupervised
Learning of Spoken Language with Visual Context, NeurIPS 2016; B. Zhou et al., Learning Deep Features for Scene
Recognition using Places Database, NeurIPS 2014.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmpt.store.recipes import Card, add_arguments, finish, layout_error, read_json, report, require

CARD = Card(
    name="Places Audio Captions 400k",
    license=(
        "spoken captions: MIT SLS Places Audio Caption terms (see homepage); images: Places205 terms "
        "(non-commercial research and education)"
    ),
    homepage="https://groups.csail.mit.edu/sls/downloads/placesaudio/",
    modalities="image, audio (spoken caption), text (ASR transcript)",
    citation=(
        "Harwath, Recasens, Suris, Chuang, Torralba & Glass, Jointly Discovering Visual Objects and Spoken Words "
        "from Raw Sensory Input, ECCV 2018"
    ),
    notes="about 400k spoken captions of Places205 images; text is ASR output, not a human transcript",
)
JSONS = {"train": Path("metadata") / "train.json", "val": Path("metadata") / "val.json"}
LAYOUT = "the official PlacesAudio_400k_distro layout (metadata/train.json, metadata/val.json, wavs/)"
IMAGES_LAYOUT = "the Places205 images (--images: the folder the json's image paths are relative to)"
FIELDS = ("uttid", "wav", "image")


def rows_of(root: Path, images: Path | None = None) -> list[dict[str, Any]]:
    """One row per utterance of metadata/{train,val}.json, listed even when its wav or image is absent."""
    require(root, "wavs", LAYOUT)
    rows = []
    for split, name in JSONS.items():
        path = require(root, name, LAYOUT)
        data = read_json(path, "data")
        if images is None:
            base = Path(str(data.get("image_base_path") or ""))
            if not str(base) or not base.is_dir():
                raise SystemExit(
                    f"error: Places205 images not found: pass --images (the json's image_base_path "
                    f"{str(base) or '(none)'} is not a folder here)"
                )
            images = base
        if not images.is_dir():
            raise layout_error(images, images.parent, IMAGES_LAYOUT)
        for entry in data["data"]:
            if not isinstance(entry, dict) or any(not entry.get(f) for f in FIELDS):
                raise SystemExit(f"error: {path} has an entry without {', '.join(FIELDS)}: {str(entry)[:80]}")
            rows.append(
                {
                    "id": entry["uttid"],
                    "image": images / entry["image"],
                    "audio": root / entry["wav"],
                    "text": entry.get("asr_text"),
                    "split": split,
                    "image_id": Path(entry["image"]).stem,
                    "speaker": entry.get("speaker"),
                }
            )
    return rows


def convert(
    root: Path, out: Path, images: Path | None = None, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Write the Places Audio folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    return finish(rows_of(root, images), out, CARD, options=options, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn the Places Audio Captions 400k layout into an mmpt dataset."
    )
    parser.add_argument("root", type=Path, help="the PlacesAudio_400k_distro folder (metadata/, wavs/)")
    add_arguments(parser)
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="the Places205 images folder (default: the json's image_base_path)",
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.images, options=args, quiet=False)
    report("Places Audio", args.out, counts)


if __name__ == "__main__":
    main()
