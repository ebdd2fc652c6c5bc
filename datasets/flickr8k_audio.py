"""Flickr8k + Flickr Audio Caption Corpus -> mmpt dataset (image, spoken caption, its written text).

Flickr8k (Hodosh, Young & Hockenmaier 2013) is 8,092 Flickr photos with five written captions each; the Flickr
Audio Caption Corpus (Harwath & Glass 2015) adds 40,000 spoken captions of the 8,000 images in the official
train / dev / test lists (6,000 / 1,000 / 1,000 images), read aloud by 183 speakers on Amazon Mechanical Turk
(16 kHz WAV, about 4 s each, 65 hours in all). Licences: the spoken captions CC BY-SA (MIT SLS); the text
captions for research use under the University of Illinois' Flickr8k terms; the photos remain under their
owners' Flickr terms of use. The three archives unpack as:

    Flickr8k_Dataset.zip -> Flicker8k_Dataset/1000268201_693b08cb0e.jpg ...   (sic: "Flicker"; "Flickr8k_Dataset"
                                                                                is accepted too)
    Flickr8k_text.zip    -> Flickr8k.token.txt         1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress ...
                            Flickr_8k.trainImages.txt  one image file name per line (6,000)
                            Flickr_8k.devImages.txt    (1,000)
                            Flickr_8k.testImages.txt   (1,000)
                            (the files may also sit in a Flickr8k_text/ folder)
    flickr_audio.tar.gz  -> flickr_audio/wavs/2274602044_b3d55df235_3.wav ...
                            flickr_audio/wav2capt.txt  2274602044_b3d55df235_3.wav 2274602044_b3d55df235.jpg #3
                            flickr_audio/wav2spk.txt   2274602044_b3d55df235_3.wav 57

Rows: one per spoken caption (the corpus pairs each recording with its own caption): id (the wav stem), image,
audio, text (the written caption that was read, from Flickr8k.token.txt), split (train / val / test from the
image lists: dev -> val), and metadata image_id (the jpg stem, shared by an image's five rows), caption_n (0-4)
and speaker. A spoken caption whose written caption is absent from the token file keeps its row without text;
one whose image is in none of the three lists keeps its row and takes mmpt's split by id hash; both are counted
in the closing line, as are listed images without any spoken caption. Papers report speech <-> image retrieval
R@1/5/10 on the 1,000 test images (DAVEnet-style models; e.g. FaST-VGS, Peng & Harwath 2022). Usage:

    python datasets/flickr8k_audio.py ROOT --out flickr8k_audio.lance [--images DIR] [--text DIR] [--audio DIR]
    mmpt data info flickr8k_audio.lance

ROOT holds the three unpacked archives by default; --images / --text / --audio point at each part elsewhere
(the folder holding Flicker8k_Dataset/, the token and list files, flickr_audio/ respectively, or that folder
itself). `--out flickr8k_audio/manifest.csv` writes only the manifest, for `mmpt ingest` later.

Citations: M. Hodosh, P. Young, J. Hockenmaier, Framing Image Description as a Ranking Task, JAIR 47, 2013;
D. Harwath, J. Glass, Deep Multimodal Semantic Embeddings for Speech and Images, ASRU 2015.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmpt.store.recipes import Card, add_arguments, finish, layout_error, report, require

CARD = Card(
    name="Flickr8k Audio Captions",
    license=(
        "spoken captions CC BY-SA (Flickr Audio Caption Corpus); text captions: Flickr8k research-use terms "
        "(University of Illinois); images: Flickr terms of use"
    ),
    homepage="https://groups.csail.mit.edu/sls/downloads/flickraudio/",
    modalities="image, audio (spoken caption), text (the caption read)",
    citation=(
        "Harwath & Glass, Deep Multimodal Semantic Embeddings for Speech and Images, ASRU 2015; Hodosh, Young & "
        "Hockenmaier, Framing Image Description as a Ranking Task, JAIR 2013"
    ),
    notes="40,000 spoken captions of 8,000 images (6,000 / 1,000 / 1,000 in the official image lists)",
)
IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset")
TEXT_FILES = (
    "Flickr8k.token.txt",
    "Flickr_8k.trainImages.txt",
    "Flickr_8k.devImages.txt",
    "Flickr_8k.testImages.txt",
)
SPLIT_LISTS = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
LAYOUT = (
    "the unpacked Flickr8k archives and Flickr Audio Caption Corpus (Flicker8k_Dataset/*.jpg, Flickr8k.token.txt "
    "and the Flickr_8k.*Images.txt lists, flickr_audio/wavs/ with wav2capt.txt and wav2spk.txt)"
)


def image_dir(base: Path) -> Path:
    """The folder of Flickr8k jpgs: `base` when it is one, else its Flicker8k_Dataset/ (or Flickr8k_Dataset/)."""
    if base.name in IMAGE_DIRS:
        return require(base.parent, base.name, LAYOUT)
    found = next((base / name for name in IMAGE_DIRS if (base / name).is_dir()), None)
    if found is None:
        raise layout_error(base / IMAGE_DIRS[0], base, LAYOUT)
    return found


def text_dir(base: Path) -> Path:
    """The folder holding Flickr8k.token.txt and the image lists: `base`, or its Flickr8k_text/ folder."""
    for folder in (base, base / "Flickr8k_text"):
        if (folder / TEXT_FILES[0]).is_file():
            for name in TEXT_FILES[1:]:
                require(folder, name, LAYOUT)
            return folder
    raise layout_error(base / TEXT_FILES[0], base, LAYOUT)


def audio_dir(base: Path) -> Path:
    """The flickr_audio/ folder (holding wavs/, wav2capt.txt, wav2spk.txt): `base` itself or its child."""
    folder = base if base.name == "flickr_audio" else require(base, "flickr_audio", LAYOUT)
    for name in ("wavs", "wav2capt.txt", "wav2spk.txt"):
        require(folder, name, LAYOUT)
    return folder


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file, stripped."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_captions(path: Path) -> dict[str, str]:
    """Flickr8k.token.txt as {"<image>.jpg#<n>": caption}."""
    captions = {}
    for number, line in enumerate(read_lines(path), 1):
        key, sep, caption = line.partition("\t")
        if not sep or "#" not in key:
            raise SystemExit(
                f"error: {path} line {number} is not '<image>.jpg#<n><TAB><caption>': {line[:60]!r}"
            )
        captions[key.strip()] = caption.strip()
    return captions


def read_wav2capt(path: Path) -> list[tuple[str, str, int]]:
    """wav2capt.txt as (wav, image, caption number) triples."""
    triples = []
    for number, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("#") or not parts[2][1:].isdigit():
            raise SystemExit(f"error: {path} line {number} is not '<wav> <image>.jpg #<n>': {line[:60]!r}")
        triples.append((parts[0], parts[1], int(parts[2][1:])))
    return triples


def read_speakers(path: Path) -> dict[str, str]:
    """wav2spk.txt as {wav: speaker}."""
    return {parts[0]: parts[1] for parts in (line.split() for line in read_lines(path)) if len(parts) == 2}


def rows_of(
    root: Path,
    images: Path | None = None,
    text: Path | None = None,
    audio: Path | None = None,
    notes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per line of wav2capt.txt (a spoken caption), the recording listed even when its file (or its image)
    is absent; what the metadata files do not agree on is counted in `notes`."""
    jpgs = image_dir(images or root)
    texts = text_dir(text or root)
    speech = audio_dir(audio or root)
    captions = read_captions(texts / TEXT_FILES[0])
    split_of = {name: split for split, file in SPLIT_LISTS.items() for name in read_lines(texts / file)}
    speakers = read_speakers(speech / "wav2spk.txt")
    rows, uncaptioned, unlisted, spoken = [], 0, 0, set()
    for wav, jpg, n in read_wav2capt(speech / "wav2capt.txt"):
        caption = captions.get(f"{jpg}#{n}")
        uncaptioned += caption is None
        unlisted += jpg not in split_of
        spoken.add(jpg)
        rows.append(
            {
                "id": Path(wav).stem,
                "image": jpgs / jpg,
                "audio": speech / "wavs" / wav,
                "text": caption,
                "split": split_of.get(jpg),
                "image_id": Path(jpg).stem,
                "caption_n": n,
                "speaker": speakers.get(wav),
            }
        )
    silent = len(set(split_of) - spoken)
    said = [
        f"{uncaptioned} spoken captions have no written caption in {TEXT_FILES[0]} (kept without text)"
        if uncaptioned
        else "",
        f"{unlisted} spoken captions name an image in no split list (split by id hash)" if unlisted else "",
        f"{silent} images of the split lists have no spoken caption" if silent else "",
    ]
    if notes is not None:
        notes.extend(note for note in said if note)
    return rows


def convert(
    root: Path,
    out: Path,
    images: Path | None = None,
    text: Path | None = None,
    audio: Path | None = None,
    options: Any = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write the Flickr8k audio layout at `root` to `out` (.lance dataset or manifest); return the counts."""
    notes: list[str] = []
    rows = rows_of(root, images, text, audio, notes)
    return finish(rows, out, CARD, options=options, quiet=quiet, notes=notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn Flickr8k + the Flickr Audio Caption Corpus into an mmpt dataset."
    )
    parser.add_argument("root", type=Path, help="the folder holding the three unpacked archives")
    add_arguments(parser)
    parser.add_argument(
        "--images", type=Path, default=None, help="the folder holding Flicker8k_Dataset/ (ROOT)"
    )
    parser.add_argument(
        "--text", type=Path, default=None, help="the folder holding Flickr8k.token.txt (ROOT)"
    )
    parser.add_argument("--audio", type=Path, default=None, help="the folder holding flickr_audio/ (ROOT)")
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.images, args.text, args.audio, options=args, quiet=False)
    report("Flickr8k Audio", args.out, counts)


if __name__ == "__main__":
    main()
