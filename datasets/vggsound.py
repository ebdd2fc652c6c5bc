"""VGGSound -> mmpt dataset.

VGGSound (Chen, Xie, Vedaldi, Zisserman 2020; https://www.robots.ox.ac.uk/~vgg/data/vggsound/) is about 200k
10-second clips cut from YouTube videos, in 309 audio classes where the sound source is visible (about 184k train /
15.5k test lines in the CSV; fewer remain downloadable). Modalities: video (a frame -> image, the sound track ->
audio) and the class name (-> a caption). Annotations CC BY 4.0; the videos stay under YouTube's terms of
service and their uploaders' rights. The authors ship only the CSV; users download the clips themselves:

    VGGSound/
      vggsound.csv                      no header: youtube_id,start_seconds,label,split (train | test)
      video/<youtube_id>_<start:06d>.mp4    10 s clips (the common downloaders' naming), any sub-folders
      video/<youtube_id>.mp4                or whole videos: the clip is start..start+10 s of the file

The recipe assumes every file under video/ whose name is `<youtube_id>_<start:06d>` (or `<youtube_id>_<start>`)
is already the 10 s clip, and that a file named `<youtube_id>` alone is the whole YouTube video, cut at ingest
with the `start` / `end` window columns. Any of .mp4 .m4v .mkv .webm .avi .mov. A clip of the CSV with no file
keeps its row (as `video/<youtube_id>_<start:06d>.mp4`): the ingest report lists it as `missing_file`.

Rows: id `<youtube_id>_<start:06d>`, video, label (the class as written), text ("the sound of dog barking"), split
from the CSV's fourth column, and metadata `youtube_id`, `youtube_start` (seconds into the YouTube video).
Published figures (VGGSound test set, audio only, from the authors' repository
https://github.com/hche11/VGGSound): ResNet-18 + NetVLAD trained on VGGSound, mAP 0.496, AUC 0.963. Usage:

    python datasets/vggsound.py VGGSound --out vggsound.lance
    mmpt data info vggsound.lance

Citation: H. Chen, W. Xie, A. Vedaldi, A. Zisserman, "VGGSound: A Large-scale Audio-Visual Dataset", ICASSP 2020.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from mmpt.store.recipes import (
    Card,
    add_arguments,
    class_caption,
    finish,
    layout_error,
    media_index,
    report,
    require,
    unique_ids,
)
from mmpt.store.video import VIDEO_EXTS  # the video files ingest decodes

CARD = Card(
    name="VGGSound",
    license="annotations CC BY 4.0; videos: YouTube terms of service",
    homepage="https://www.robots.ox.ac.uk/~vgg/data/vggsound/",
    modalities="video (frame -> image, sound track -> audio), text (class caption)",
    citation="Chen, Xie, Vedaldi, Zisserman, VGGSound: A Large-scale Audio-Visual Dataset, ICASSP 2020",
    notes="~200k 10 s YouTube clips, 309 classes, train/test as in vggsound.csv; "
    "published (audio, test): ResNet-18 + NetVLAD mAP 0.496, AUC 0.963",
)
LAYOUT = "the VGGSound layout (vggsound.csv and the downloaded clips under video/)"
CLIP_SECONDS = 10
SPLITS = ("train", "test")


def read_clips(path: Path) -> list[tuple[str, int, str, str]]:
    """(youtube_id, start, label, split) per line of the header-less vggsound.csv; a bad line is one error."""
    clips = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for number, fields in enumerate(csv.reader(handle), start=1):
            if not fields:
                continue
            fields = [f.strip() for f in fields]
            if len(fields) != 4 or not fields[1].isdigit() or fields[3] not in SPLITS:
                raise SystemExit(
                    f"error: {path} line {number}: expected youtube_id,start_seconds,label,train|test; "
                    f"got {','.join(fields)}"
                )
            clips.append((fields[0], int(fields[1]), fields[2], fields[3]))
    return clips


def rows_of(
    root: Path, video_dir: Path | None = None, warnings: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per line of vggsound.csv: the cut clip, else the whole video with a window, else the expected clip;
    video files the CSV does not list are counted in `warnings`."""
    meta = require(root, "vggsound.csv", LAYOUT)
    videos = video_dir if video_dir is not None else root / "video"
    if not videos.is_dir():
        raise layout_error(videos, root, LAYOUT)
    index = media_index(videos, VIDEO_EXTS)
    used: set[str] = set()
    rows = []
    for youtube_id, start, label, split in read_clips(meta):
        clip = f"{youtube_id}_{start:06d}"
        row: dict[str, Any] = {
            "id": clip,
            "video": videos / f"{clip}.mp4",
            "text": class_caption(label),
            "label": label,
            "split": split,
            "youtube_id": youtube_id,
            "youtube_start": start,
        }
        stem = next((s for s in (clip, f"{youtube_id}_{start}") if s in index), None)
        if stem is not None:
            row["video"] = index[stem][0]
        elif youtube_id in index:  # the whole video: cut the clip at ingest
            stem = youtube_id
            row.update(video=index[stem][0], start=start, end=start + CLIP_SECONDS)
        if stem is not None:
            used.add(stem)
        rows.append(row)
    unlisted = len(set(index) - used)
    if unlisted and warnings is not None:
        warnings.append(f"{unlisted} video files under {videos} are not in vggsound.csv (left out)")
    return unique_ids(rows)


def convert(
    root: Path, out: Path, video_dir: Path | None = None, options: Any = None, quiet: bool = True
) -> dict[str, Any]:
    """Write the VGGSound folder at `root` to `out` (.lance dataset or manifest); return the counts."""
    warnings: list[str] = []
    rows = rows_of(root, video_dir, warnings)
    return finish(rows, out, CARD, options=options, quiet=quiet, warnings=warnings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn the VGGSound CSV and downloaded clips into an mmpt dataset."
    )
    parser.add_argument("root", type=Path, help="the VGGSound folder (holding vggsound.csv and video/)")
    add_arguments(parser)
    parser.add_argument(
        "--video-dir", type=Path, default=None, help="where the clips are (default: ROOT/video)"
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.video_dir, options=args, quiet=False)
    report("VGGSound", args.out, counts)


if __name__ == "__main__":
    main()
