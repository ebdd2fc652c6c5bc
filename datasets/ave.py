"""AVE (Audio-Visual Event) -> mmpt dataset.

AVE (Tian, Shi, Li, Duan, Xu 2018; https://github.com/YapengTian/AVE-ECCV18) is 4,143 annotated audio-visual
events in 10-second YouTube videos (a subset of AudioSet), 28 event categories (church bell, barking, acoustic
guitar, ...), split 3,339 train / 402 val / 402 test. A video may hold several events, so there are fewer videos
than events. Modalities: video (a frame of the event -> image, its sound -> audio) and the category (-> a
caption). The authors state no licence for the annotations (released for research with the ECCV paper); the
videos stay under YouTube's terms of service and their uploaders' rights. The official archive (AVE_Dataset.zip):

    AVE_Dataset/
      AVE/<VideoID>.mp4                 the 10 s videos
      Annotations.txt                   header line, then Category&VideoID&Quality&StartTime&EndTime
      trainSet.txt, valSet.txt, testSet.txt   the same format: the splits of the paper

Rows: one per line of the three split files (one annotated event): id `<VideoID>_<StartTime>_<EndTime>`, video
with the event's window (`start` / `end`, seconds: the frame and the audio come from inside the event), label
(the category), text ("the sound of Church bell"), split (train / val / test as the file), metadata `video_id`,
`quality`. A split line missing from Annotations.txt is kept and reported; an Annotations.txt line in no split
file is reported and left out; a video that is absent keeps its row (the ingest report lists `missing_file`).
Published (supervised event localisation, test): A+V-att 72.7%, DMRN 73.1% segment accuracy (Tian et al. 2018).
ROOT may be AVE_Dataset itself or the folder holding it. Usage:

    python datasets/ave.py AVE_Dataset --out ave.lance
    mmpt data info ave.lance

Citation: Y. Tian, J. Shi, B. Li, Z. Duan, C. Xu, "Audio-Visual Event Localization in Unconstrained Videos",
ECCV 2018.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmpt.store.recipes import Card, add_arguments, class_caption, finish, report, require, unique_ids

CARD = Card(
    name="AVE",
    license="not stated by the authors (research release); videos: YouTube terms of service",
    homepage="https://github.com/YapengTian/AVE-ECCV18",
    modalities="video (frame -> image, sound track -> audio), text (class caption)",
    citation="Tian, Shi, Li, Duan, Xu, Audio-Visual Event Localization in Unconstrained Videos, ECCV 2018",
    notes="4,143 events in 10 s videos, 28 categories; train 3,339 / val 402 / test 402; "
    "published localisation accuracy: A+V-att 72.7%, DMRN 73.1%",
)
LAYOUT = "the AVE_Dataset layout (AVE/<VideoID>.mp4, Annotations.txt, trainSet.txt, valSet.txt, testSet.txt)"
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
COLUMNS = ("Category", "VideoID", "Quality", "StartTime", "EndTime")

Event = tuple[str, str, str, int, int]  # category, video id, quality, start, end


def read_events(path: Path) -> list[Event]:
    """The events of an AVE list file (`&`-separated, header line optional); a bad line is one error."""
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = [f.strip() for f in line.split("&")]
        if not line.strip() or (number == 1 and fields[0] == COLUMNS[0]):
            continue
        if len(fields) != 5 or not (fields[3].isdigit() and fields[4].isdigit()):
            raise SystemExit(f"error: {path} line {number}: expected {'&'.join(COLUMNS)}; got {line.strip()}")
        events.append((fields[0], fields[1], fields[2], int(fields[3]), int(fields[4])))
    return events


def rows_of(root: Path, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per event of trainSet.txt, valSet.txt and testSet.txt, with its video and window; events the
    split files and Annotations.txt do not agree on are counted in `warnings`."""
    if (root / "AVE_Dataset").is_dir():
        root = root / "AVE_Dataset"
    annotated = set(read_events(require(root, "Annotations.txt", LAYOUT)))
    videos = require(root, "AVE", LAYOUT)
    listed: set[Event] = set()
    unannotated = 0
    rows = []
    for split, name in SPLIT_FILES.items():
        for event in read_events(require(root, name, LAYOUT)):
            category, video_id, quality, start, end = event
            listed.add(event)
            unannotated += event not in annotated
            rows.append(
                {
                    "id": f"{video_id}_{start}_{end}",
                    "video": videos / f"{video_id}.mp4",
                    "start": start,
                    "end": end,
                    "text": class_caption(category),
                    "label": category,
                    "split": split,
                    "video_id": video_id,
                    "quality": quality,
                }
            )
    unsplit = len(annotated - listed)
    said = [
        f"{unannotated} split-file events are not in Annotations.txt (kept)" if unannotated else "",
        f"{unsplit} Annotations.txt events are in no split file (left out)" if unsplit else "",
    ]
    if warnings is not None:
        warnings.extend(w for w in said if w)
    return unique_ids(rows)


def convert(root: Path, out: Path, options: Any = None, quiet: bool = True) -> dict[str, Any]:
    """Write the AVE folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    warnings: list[str] = []
    rows = rows_of(root, warnings)
    return finish(rows, out, CARD, options=options, quiet=quiet, warnings=warnings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn the official AVE layout into an mmpt dataset.")
    parser.add_argument("root", type=Path, help="the AVE_Dataset folder (or the folder holding it)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, options=args, quiet=False)
    report("AVE", args.out, counts)


if __name__ == "__main__":
    main()
