"""AudioCaps -> mmpt dataset.

AudioCaps (Kim et al. 2019; https://github.com/cdjkim/audiocaps, https://audiocaps.github.io) is ~51k ten-second
clips of AudioSet (YouTube) with crowd-sourced captions: train ~49.8k clips with one caption each (49,838 rows),
val 495 and test 975 clips with five captions each (2,475 / 4,875 rows). The authors distribute only the caption
CSVs; the audio has to be fetched from YouTube by each user (yt-dlp, `aac-datasets`, `audiocaps-download`), and
clips removed from YouTube since are common. The official layout (the repository as cloned):

    audiocaps/
      dataset/train.csv  val.csv  test.csv     audiocap_id,youtube_id,start_time,caption (one row per caption)
      dataset2.0/...                           AudioCaps 2.0, same columns (more train captions): --captions dataset2.0

and the downloaded clips, already cut to [start_time, start_time + 10 s), under `--audio-dir` (default
`audiocaps/audio`) in any of the layouts the usual downloaders write, per split folder or flat:

      audio/{train,val,test}/<youtube_id>.wav      (also .flac, .ogg, .mp3)
      audio/Y<youtube_id>.wav                      (AudioSet / PANNs naming)
      audio/<youtube_id>_<start_time>.flac         (aac-datasets naming)

Rows: one per clip (the CSV rows grouped by split, youtube_id and start_time): id (the youtube_id; with
`_<start_time>` when a video gives several clips), audio, texts (every caption; text is the first), split (the
CSV it comes from), and youtube_id, start_time, audiocap_ids as metadata. A clip not found on disk keeps its row,
named where the layout of the clips found puts it, so the ingest report lists it as `missing_file` and the
closing line counts it. Usage:

    python datasets/audiocaps.py audiocaps --out audiocaps.lance [--audio-dir clips] [--captions dataset2.0]
    mmpt data info audiocaps.lance
    mmpt eval --run RUN --data audiocaps.lance --protocol audiocaps    # the test split, all five captions

Published text->audio R@1/5/10 on the test split: LAION-CLAP 36.1 / 71.8 / 83.9, audio->text 46.8 / 82.9 / 90.7
(Wu et al., ICASSP 2023, Table 3), on the clips still online then (~957 of 975).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from mmpt.store.recipes import (
    Card,
    add_arguments,
    finish,
    layout_error,
    media_index,
    read_csv,
    report,
    require,
)

CARD = Card(
    name="AudioCaps",
    license="annotations MIT (AudioCaps repository); audio: YouTube videos under their uploaders' terms (not "
    "distributed)",
    homepage="https://github.com/cdjkim/audiocaps",
    modalities="audio, text (1 caption per train clip, 5 per val/test clip)",
    citation="Kim, Kim, Lee, Kim, AudioCaps: Generating Captions for Audios in The Wild, NAACL-HLT 2019",
    notes="~51k 10 s AudioSet clips; train 49,838 captions, val 495 x 5, test 975 x 5; published retrieval "
    "(test): LAION-CLAP text->audio R@1 36.1, audio->text R@1 46.8",
)
SPLITS = ("train", "val", "test")
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
NAMES = ("{ytid}", "Y{ytid}", "{ytid}_{start}")  # file stems the common downloaders write
LAYOUT = "the AudioCaps repository layout (dataset/train.csv, val.csv, test.csv)"
AUDIO_LAYOUT = (
    "downloaded clips named <youtube_id>, Y<youtube_id> or <youtube_id>_<start_time> (.wav .flac .ogg .mp3), "
    "in {train,val,test}/ folders or flat"
)


def clips_of(csv_rows: list[dict[str, str]], split: str) -> list[dict[str, Any]]:
    """The CSV's caption rows grouped into clips (split, youtube_id, start_time), in order of first mention."""
    clips: dict[tuple[str, int], dict[str, Any]] = {}
    for row in csv_rows:
        ytid = row["youtube_id"].strip()
        try:
            start = int(float(row["start_time"]))
        except ValueError:
            raise SystemExit(
                f"error: start_time {row['start_time']!r} of youtube_id {ytid} in {split}.csv is not a number"
            ) from None
        clip = clips.setdefault(
            (ytid, start),
            {"youtube_id": ytid, "start_time": start, "split": split, "captions": [], "ids": []},
        )
        caption = (row["caption"] or "").strip()  # a short CSV line gives None
        if caption:
            clip["captions"].append(caption)
        clip["ids"].append((row["audiocap_id"] or "").strip())
    return list(clips.values())


def index_audio(audio_dir: Path) -> dict[tuple[str, str], Path]:
    """(folder, file stem) -> path of every audio file in `audio_dir` (folder "") and its split folders."""
    return {
        (folder, stem): paths[0]
        for folder in ("", *SPLITS)
        for stem, paths in media_index(audio_dir / folder, AUDIO_EXTS, recursive=False).items()
    }


def _stems(clip: dict[str, Any]) -> list[str]:
    return [n.format(ytid=clip["youtube_id"], start=clip["start_time"]) for n in NAMES]


def place_audio(clips: list[dict[str, Any]], audio_dir: Path) -> int:
    """Set each clip's `audio`: the file found, else where the layout of the files found would put it; the
    number found. No clip found at all is a layout error (the wrong folder, not removed videos)."""
    files = index_audio(audio_dir)
    layouts: Counter[tuple[bool, int, str]] = Counter()  # (per split folder, name pattern, extension)
    missing = []
    for clip in clips:
        hit = None
        for folder in (clip["split"], ""):
            for k, stem in enumerate(_stems(clip)):
                path = files.get((folder, stem))
                if path is not None:
                    hit = path
                    layouts[(folder != "", k, path.suffix)] += 1
                    break
            if hit is not None:
                break
        clip["audio"] = hit
        if hit is None:
            missing.append(clip)
    if not layouts:
        raise layout_error(audio_dir / "<split>" / "<youtube_id>.wav", audio_dir, AUDIO_LAYOUT)
    per_split, pattern, ext = layouts.most_common(1)[0][0]
    for clip in missing:
        folder = audio_dir / clip["split"] if per_split else audio_dir
        clip["audio"] = folder / (_stems(clip)[pattern] + ext)
    return len(clips) - len(missing)


def rows_of(root: Path, audio_dir: Path | None = None, captions: str = "dataset") -> list[dict[str, Any]]:
    """One row per clip of train/val/test.csv with all its captions; clips not downloaded stay as rows."""
    clips = []
    for split in SPLITS:
        path = require(root, Path(captions) / f"{split}.csv", LAYOUT)
        clips.extend(clips_of(read_csv(path, COLUMNS), split))
    audio_dir = audio_dir if audio_dir is not None else root / "audio"
    if not audio_dir.is_dir():
        raise layout_error(audio_dir, audio_dir.parent, AUDIO_LAYOUT + " (pass --audio-dir)")
    place_audio(clips, audio_dir)
    videos = Counter(clip["youtube_id"] for clip in clips)
    named = Counter(f"{clip['youtube_id']}_{clip['start_time']}" for clip in clips)
    rows = []
    for clip in clips:
        row_id = clip["youtube_id"]
        if videos[row_id] > 1:  # one video, several clips (or a clip in two CSVs): keep them apart
            row_id = f"{row_id}_{clip['start_time']}"
            if named[row_id] > 1:
                row_id = f"{clip['split']}/{row_id}"
        rows.append(
            {
                "id": row_id,
                "audio": clip["audio"],
                "texts": clip["captions"],
                "split": clip["split"],
                "youtube_id": clip["youtube_id"],
                "start_time": clip["start_time"],
                "audiocap_ids": ",".join(clip["ids"]),
            }
        )
    return rows


def convert(
    root: Path,
    out: Path,
    audio_dir: Path | None = None,
    captions: str = "dataset",
    options: Any = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write the AudioCaps captions at `root` and the clips in `audio_dir` to `out`; return the counts."""
    return finish(rows_of(root, audio_dir, captions), out, CARD, options=options, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn AudioCaps (caption CSVs + downloaded clips) into an mmpt dataset."
    )
    parser.add_argument("root", type=Path, help="the AudioCaps repository folder (holding dataset/*.csv)")
    add_arguments(parser)
    parser.add_argument(
        "--audio-dir", type=Path, default=None, help="folder of the downloaded clips (default: ROOT/audio)"
    )
    parser.add_argument(
        "--captions", default="dataset", help="caption folder under ROOT: dataset (v1, default) or dataset2.0"
    )
    args = parser.parse_args(argv)
    counts = convert(args.root, args.out, args.audio_dir, args.captions, options=args, quiet=False)
    report("AudioCaps", args.out, counts)


if __name__ == "__main__":
    main()
