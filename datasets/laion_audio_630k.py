"""LAION-Audio-630K -> mmpt dataset.

LAION-Audio-630K (Wu et al. 2023, the LAION-CLAP corpus; https://github.com/LAION-AI/audio-dataset) is 633,526
audio-text pairs (4,325 h) from eight sources: Freesound, BBC Sound Effects, Epidemic Sound, Audiostock, Free To
Use Sounds, Sonniss Game Effects, We Sound Effects and Paramount Motion; only the first four are released, as
URL lists, and the corpus circulates in the webdataset form LAION's pipeline writes (48 kHz FLAC + JSON):

    laion-audio-630k/
      <subset>/train/0.tar 1.tar ... sizes.json      e.g. freesound_no_overlap/, BBCSoundEffects/, audiostock/
      <subset>/test/0.tar ...                        (some subsets also have valid/)
        each tar: <key>.flac + <key>.json  {"text": [captions...], "tag": [...], "original_data": {...}}

The split is the folder a shard sits in (train / valid / test); a json caption list of two or more becomes
`texts` (text is the first), a single caption the text. `tag` and `original_data` are kept as JSON-text metadata
columns, the json's `text` list as `meta_text`. Ids are `<shard>/<key>` with the shard named by its path below
the folder common to the shards ingested (`<subset>/<split>/<n>` when several subsets are taken); the subset also
shows in each row's `source` (the shard path). A corrupt or cut-short member is reported in the ingest report and
the rest of its shard kept. Usage:

    python datasets/laion_audio_630k.py laion-audio-630k --out laion630k.lance [--subsets freesound_no_overlap,audiostock]
    mmpt data info laion630k.lance
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmpt.store.recipes import Card, add_arguments, comma_list, ingest_into, layout_error, report

CARD = Card(
    name="LAION-Audio-630K",
    license="research use only (LAION-Audio-630K terms of use); audio under each source's terms: Freesound "
    "per-clip Creative Commons licences, BBC Sound Effects RemArc licence (non-commercial), Epidemic Sound and "
    "Audiostock site licences",
    homepage="https://github.com/LAION-AI/audio-dataset/tree/main/laion-audio-630k",
    modalities="audio, text (1-5 captions per clip)",
    citation="Wu, Chen, Zhang, Hui, Berg-Kirkpatrick, Dubnov, Large-scale Contrastive Language-Audio Pretraining "
    "with Feature Fusion and Keyword-to-Caption Augmentation, ICASSP 2023 (arXiv:2211.06687)",
    notes="633,526 pairs, 4,325 h, 8 sources (4 released); webdataset shards per subset and split",
)
SPLIT_FOLDERS = ("train", "valid", "val", "validation", "test")  # what LAION's make_tar.py writes
LAYOUT = "the LAION-Audio-630K webdataset layout (<subset>/train/*.tar, <subset>/test/*.tar)"


def subset_shards(folder: Path) -> list[Path]:
    """The tar shards of one subset, split folder by split folder (train / valid / test and their aliases)."""
    shards: list[Path] = []
    for split_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() in SPLIT_FOLDERS):
        shards.extend(sorted(split_dir.glob("*.tar"), key=lambda p: (len(p.stem), p.stem)))
    return shards


def shards_of(root: Path, subsets: list[str] | None = None) -> list[Path]:
    """Every shard of the chosen subsets (default: each folder of `root` holding split folders with tars)."""
    if not root.is_dir():
        raise layout_error(root, root.parent, LAYOUT)
    if subsets:
        shards: list[Path] = []
        for name in subsets:
            found = subset_shards(root / name) if (root / name).is_dir() else []
            if not found:
                raise layout_error(root / name / "train" / "0.tar", root, LAYOUT)
            shards.extend(found)
        return shards
    shards = [s for folder in sorted(p for p in root.iterdir() if p.is_dir()) for s in subset_shards(folder)]
    if not shards:
        raise layout_error(root / "<subset>" / "train" / "0.tar", root, LAYOUT)
    return shards


def convert(
    root: Path, out: Path, subsets: list[str] | None = None, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Ingest the chosen subsets' shards under `root` into the `out` .lance dataset; return the counts (rows:
    samples read; splits: rows written per split)."""
    shards = shards_of(root, subsets)
    result = ingest_into([str(s) for s in shards], out, CARD, options=options, quiet=quiet)
    splits = result.dataset.stats()["splits"]
    return {
        "rows": result.read,
        "shards": len(shards),
        "splits": dict(sorted(splits.items())),
        "written": result.written,
        "rejected": len(result.rejected),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn LAION-Audio-630K webdataset shards into an mmpt dataset."
    )
    parser.add_argument("root", type=Path, help="the folder holding the <subset>/{train,test}/*.tar shards")
    add_arguments(parser)
    parser.add_argument("--subsets", default=None, help="comma-separated subset folders (default: every one)")
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, comma_list(args.subsets), options=args, quiet=False)
    report("LAION-Audio-630K", args.out, counts)


if __name__ == "__main__":
    main()
