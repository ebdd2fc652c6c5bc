"""AudioSet -> mmpt dataset (multi-label).

AudioSet (Gemmeke et al. 2017; https://research.google.com/audioset/) is about 2.08M 10-second segments of
YouTube videos labelled with 527 sound classes of the AudioSet ontology, several per segment (weak, clip-level
labels): balanced_train about 22k segments, eval about 20k, unbalanced_train about 2.04M. Annotations CC BY 4.0
(ontology CC BY-SA 4.0); the audio and video stay under YouTube's terms of service and their uploaders' rights.
Google ships the CSVs; users download the media themselves, so the recipe reads either audio clips or videos:

    AudioSet/
      balanced_train_segments.csv       3 '#' lines, then: YTID, start_seconds, end_seconds, positive_labels
      unbalanced_train_segments.csv     (with --unbalanced)   e.g. --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
      eval_segments.csv
      class_labels_indices.csv          index,mid,display_name
      audio/<csv stem>/Y<YTID>_<start>_<end>.wav   the 10 s segment, named with its times as in the CSV (30.000)
      audio/.../Y<YTID>.wav or <YTID>.flac         or named by the id alone (still the 10 s segment)
      video/<csv stem>/Y<YTID>_<start>_<end>.mp4   a video cut to the segment
      video/.../<YTID>.mp4                         or the whole YouTube video: cut at ingest to start..end

Audio may be .wav .flac .ogg .mp3 .aiff, video .mp4 .m4v .mkv .webm .avi .mov; sub-folders are searched (a name
found in several is taken from the folder named like its CSV). Audio files are taken as the segment itself (mmpt
cuts windows only from videos); a row with both an audio file and a video gets its audio from the file and its
image from the video's frame. A segment with no file keeps its row, at the path the files found for its CSV
follow (default audio/<csv stem>/Y<YTID>_<start>_<end>.wav), so the ingest report lists it as `missing_file`.

Rows: id (the YTID), audio and/or video, labels (display names of positive_labels), label (the first), text
("the sound of Speech and Dog"), split (balanced_train and unbalanced_train -> train, eval -> test), metadata
`subset`, `segment_start`, `segment_end`, `positive_labels` (the mids). A mid missing from class_labels_indices.csv
is kept as its mid and reported. `mmpt eval` on the result reports zero-shot mAP over the label sets (macro AP,
as AudioSet papers report). Published on eval: PANNs CNN14 mAP 0.431 (Kong et al. 2020), AST 0.459 (Gong et al.
2021), both trained on the full training set. Usage:

    python datasets/audioset.py AudioSet --out audioset.lance [--unbalanced]
    mmpt data info audioset.lance

Citation: J. F. Gemmeke et al., "Audio Set: An ontology and human-labeled dataset for audio events", ICASSP 2017.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmpt.store.recipes import (
    Card,
    add_arguments,
    class_caption,
    finish,
    layout_error,
    media_index,
    read_csv,
    report,
    require,
    unique_ids,
)
from mmpt.store.video import VIDEO_EXTS  # the video files ingest decodes

CARD = Card(
    name="AudioSet",
    license="annotations CC BY 4.0, ontology CC BY-SA 4.0; audio and video: YouTube terms of service",
    homepage="https://research.google.com/audioset/",
    modalities="audio (and/or video: frame -> image), labels (527 classes, multi-label), text (caption)",
    citation="Gemmeke et al., Audio Set: An ontology and human-labeled dataset for audio events, ICASSP 2017",
    notes="~2.08M 10 s segments, 527 classes; balanced_train ~22k -> train, eval ~20k -> test; "
    "published eval mAP: PANNs CNN14 0.431, AST 0.459",
)
LAYOUT = "the AudioSet layout (*_segments.csv, class_labels_indices.csv, audio/ or video/)"
SUBSETS = {"balanced_train": "train", "unbalanced_train": "train", "eval": "test"}
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
# How downloaders name a segment's file: with its times (the cut segment) or by the id alone.
NAMINGS: dict[str, Callable[[str, str, str], str]] = {
    "Y<id>_<start>_<end>": lambda i, s, e: f"Y{i}_{s}_{e}",
    "<id>_<start>_<end>": lambda i, s, e: f"{i}_{s}_{e}",
    "Y<id>": lambda i, s, e: f"Y{i}",
    "<id>": lambda i, s, e: i,
}
TIMED = ("Y<id>_<start>_<end>", "<id>_<start>_<end>")


def read_segments(path: Path) -> list[tuple[str, str, str, list[str]]]:
    """(YTID, start, end, mids) per segment line of an AudioSet CSV ('#' lines skipped); a bad line is one error."""
    segments = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for number, fields in enumerate(csv.reader(handle, skipinitialspace=True), start=1):
            if not fields or fields[0].lstrip().startswith("#"):
                continue
            fields = [f.strip() for f in fields]
            try:
                valid = len(fields) == 4 and float(fields[1]) < float(fields[2])
            except ValueError:
                valid = False
            if not valid:
                raise SystemExit(
                    f"error: {path} line {number}: expected YTID, start_seconds, end_seconds, "
                    f'"mid,mid,..."; got {", ".join(fields)}'
                )
            mids = [m.strip() for m in fields[3].split(",") if m.strip()]
            segments.append((fields[0], fields[1], fields[2], mids))
    return segments


def class_names(path: Path) -> dict[str, str]:
    """mid -> display_name from class_labels_indices.csv."""
    return {
        row["mid"].strip(): row["display_name"].strip() for row in read_csv(path, ("mid", "display_name"))
    }


def time_texts(start: str, end: str) -> list[tuple[str, str]]:
    """The spellings of a segment's times in file names: as in the CSV (30.000), to 3 decimals, whole seconds."""
    a, b = float(start), float(end)
    options = [(start, end), (f"{a:.3f}", f"{b:.3f}"), (f"{a:g}", f"{b:g}"), (str(int(a)), str(int(b)))]
    return list(dict.fromkeys(options))


def find(
    index: dict[str, list[Path]], ytid: str, start: str, end: str, subset: str
) -> tuple[Path, str] | None:
    """The file of one segment and the naming it follows; among several, the one in a folder named for its CSV."""
    for naming, name in NAMINGS.items():
        for s, e in time_texts(start, end) if naming in TIMED else [(start, end)]:
            paths = index.get(name(ytid, s, e))
            if paths:
                chosen = next(
                    (p for p in paths if any(d.startswith(subset) for d in p.parent.parts)), paths[0]
                )
                return chosen, naming
    return None


def rows_of(root: Path, unbalanced: bool = False, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per segment of balanced_train and eval (and unbalanced_train), with the files found for it; mids
    missing from class_labels_indices.csv are counted in `warnings`."""
    names = class_names(require(root, "class_labels_indices.csv", LAYOUT))
    subsets = [s for s in SUBSETS if unbalanced or s != "unbalanced_train"]
    csvs = {s: require(root, f"{s}_segments.csv", LAYOUT) for s in subsets}
    folders = {"audio": root / "audio", "video": root / "video"}
    if not any(f.is_dir() for f in folders.values()):
        raise layout_error(f"{root / 'audio'} or {root / 'video'}", root, LAYOUT)
    indexes = {
        "audio": media_index(folders["audio"], AUDIO_EXTS),
        "video": media_index(folders["video"], VIDEO_EXTS),
    }
    unknown: Counter[str] = Counter()
    rows = []
    for subset, path in csvs.items():
        subset_rows: list[dict[str, Any]] = []
        missing_rows: list[dict[str, Any]] = []
        conventions: Counter[tuple[str, Path, str, str]] = Counter()
        for ytid, start, end, mids in read_segments(path):
            unknown.update(m for m in mids if m not in names)
            labels = [names.get(m, m) for m in mids]
            row: dict[str, Any] = {
                "id": ytid,
                "labels": labels,
                "label": labels[0] if labels else None,
                "text": class_caption(" and ".join(labels)) if labels else None,
                "split": SUBSETS[subset],
                "subset": subset,
                "segment_start": float(start),
                "segment_end": float(end),
                "positive_labels": ",".join(mids),
            }
            for kind in ("audio", "video"):
                hit = find(indexes[kind], ytid, start, end, path.stem)
                if hit is None:
                    continue
                file, naming = hit
                row[kind] = file
                conventions[(kind, file.parent, naming, file.suffix)] += 1
                if kind == "video" and naming not in TIMED:  # the whole video: cut the segment at ingest
                    row.update(start=float(start), end=float(end))
            subset_rows.append(row)
            if "audio" not in row and "video" not in row:
                missing_rows.append(row)
        kind, folder, naming, suffix = (
            conventions.most_common(1)[0][0]
            if conventions
            else ("audio" if folders["audio"].is_dir() else "video", None, "Y<id>_<start>_<end>", "")
        )
        folder = folder or folders[kind] / path.stem
        suffix = suffix or (".wav" if kind == "audio" else ".mp4")
        for row in missing_rows:  # where the files found for this CSV say it would be
            start, end = f"{row['segment_start']:.3f}", f"{row['segment_end']:.3f}"
            row[kind] = folder / (NAMINGS[naming](row["id"], start, end) + suffix)
            if kind == "video" and naming not in TIMED:
                row.update(start=row["segment_start"], end=row["segment_end"])
        rows.extend(subset_rows)
    if unknown and warnings is not None:
        warnings.append(
            f"{sum(unknown.values())} labels name mids not in class_labels_indices.csv "
            f"(kept as the mid): {', '.join(sorted(unknown)[:5])}"
        )
    return unique_ids(rows)


def convert(
    root: Path, out: Path, unbalanced: bool = False, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Write the AudioSet folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    warnings: list[str] = []
    rows = rows_of(root, unbalanced, warnings)
    return finish(rows, out, CARD, options=options, quiet=quiet, warnings=warnings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn the AudioSet CSVs and downloaded media into an mmpt dataset."
    )
    parser.add_argument(
        "root", type=Path, help="the AudioSet folder (the segment CSVs, audio/ and/or video/)"
    )
    add_arguments(parser)
    parser.add_argument(
        "--unbalanced", action="store_true", help="also take unbalanced_train_segments.csv into train"
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.unbalanced, options=args, quiet=False)
    report("AudioSet", args.out, counts)


if __name__ == "__main__":
    main()
