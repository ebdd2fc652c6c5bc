"""Video ingest: generated mp4/mkv files (PyAV) become a frame + a mono FLAC track, with clip windows and bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmpt.errors import DataError
from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest
from mmpt.store.validate import check_row
from mmpt.store.video import VideoInput, VideoOptions

FPS, RATE = 10, 16000


def chirp(t: np.ndarray) -> np.ndarray:
    """A rising tone: any misplaced sample window shows as a low correlation (a plain tone would repeat)."""
    return 0.3 * np.sin(2 * np.pi * (200 * t + 20 * t * t))


def write_video(
    path: Path,
    seconds: float,
    *,
    audio: bool = True,
    video: bool = True,
    fps: int = FPS,
    rate: int = RATE,
    fmt: str = "mp4",
) -> Path:
    """A 32x24 video whose frame i is grey level 5 * i, with a stereo chirp (left 1.0, right 0.5) as its track."""
    codecs = {"mp4": ("mpeg4", "aac"), "matroska": ("libx264", "libopus")}[fmt]
    with av.open(str(path), "w", format=fmt) as out:
        if video:
            vs = out.add_stream(codecs[0], rate=fps)
            vs.width, vs.height, vs.pix_fmt = 32, 24, "yuv420p"
            vs.bit_rate = 4_000_000  # near-lossless: frames are told apart by their grey level
        if audio:
            aus = out.add_stream(codecs[1], rate=rate)
            aus.layout = "stereo"
        if video:
            for i in range(int(seconds * fps)):
                pixels = np.full((24, 32, 3), min(255, 5 * i), np.uint8)
                for packet in vs.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if audio:
            wave = chirp(np.arange(int(seconds * rate)) / rate).astype(np.float32)
            stereo = np.stack([wave, wave * 0.5])
            step = aus.codec_context.frame_size or 1024
            for s in range(0, stereo.shape[1], step):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(stereo[:, s : s + step]), format="fltp", layout="stereo"
                )
                frame.sample_rate, frame.pts = rate, s
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return path


def grey(blob: bytes) -> float:
    with Image.open(io.BytesIO(blob)) as img:
        return float(np.asarray(img.convert("L")).mean())


def assert_track(blob: bytes, start: float, seconds: float, rate: int = RATE) -> None:
    """Mono, native rate, exactly the window's length, and the window's own samples (the chirp downmixed)."""
    samples, got_rate = sf.read(io.BytesIO(blob), dtype="float32")
    assert samples.ndim == 1 and got_rate == rate
    assert abs(len(samples) - round(seconds * rate)) <= 1
    expected = 0.75 * chirp(start + np.arange(len(samples)) / rate)
    assert np.corrcoef(samples, expected)[0, 1] > 0.97


def rows_by_id(uri: Path) -> dict[str, dict]:
    ds = open_dataset(uri)
    table = ds.lance.to_table().drop_columns(["image", "audio"]).to_pylist()
    positions = list(range(len(table)))
    for name in ("image", "audio"):
        for row, blob in zip(table, ds.read_blobs(name, positions), strict=True):
            row[name] = blob
    return {r["id"]: r for r in table}


def test_cli_manifest_with_clip_windows(tmp_path):
    write_video(tmp_path / "a.mp4", 4.0)
    write_video(tmp_path / "b.mp4", 3.0)
    (tmp_path / "clips.csv").write_text(
        "id,video,start_seconds,end_seconds,caption\n"
        "whole,a.mp4,,,all of it\n"
        "window,a.mp4,0.5,2.5,two seconds\n"
        "open_end,b.mp4,1.2,,from 1.2 s\n"
        "long_end,b.mp4,2,9,end past the file\n"
    )
    out = tmp_path / "clips.lance"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmpt",
            "ingest",
            str(tmp_path / "clips.csv"),
            "--out",
            str(out),
            "-q",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["written"] == 4
    rows = rows_by_id(out)
    # the middle frame of each window: frame index = FPS * (start + length / 2), grey = 5 * index
    for row_id, start, seconds in (
        ("whole", 0, 4.0),
        ("window", 0.5, 2.0),
        ("open_end", 1.2, 1.8),
        ("long_end", 2, 1.0),
    ):
        row = rows[row_id]
        assert row["image"][:2] == b"\xff\xd8"  # JPEG
        assert abs(grey(row["image"]) - 5 * int(FPS * (start + seconds / 2))) <= 2, row_id
        assert_track(row["audio"], start, seconds)
        assert row["source"] == str(tmp_path / ("a.mp4" if row_id in ("whole", "window") else "b.mp4"))
    assert rows["window"]["text"] == "two seconds"
    assert (rows["window"]["start_seconds"], rows["window"]["end_seconds"]) == (0.5, 2.5)  # kept as metadata


def test_frame_position_several_frames_and_formats(tmp_path):
    write_video(tmp_path / "a.mp4", 4.0)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "video": "a.mp4", "start": 1, "end": 3}) + "\n")
    quarter = ingest(
        VideoInput(tmp_path / "m.jsonl", VideoOptions(frame=0.25, image_format="png")),
        tmp_path / "q.lance",
        quiet=True,
    )
    image = rows_by_id(quarter.dataset.uri)["a"]["image"]
    assert image[:4] == b"\x89PNG" and abs(grey(image) - 5 * 15) <= 2  # 1 s + 0.25 x 2 s = frame 15
    seconds = ingest(
        VideoInput(tmp_path / "m.jsonl", VideoOptions(frame="0.3s")), tmp_path / "s.lance", quiet=True
    )
    assert abs(grey(rows_by_id(seconds.dataset.uri)["a"]["image"]) - 5 * 13) <= 2  # 1.3 s = frame 13

    several = ingest(
        VideoInput(tmp_path / "m.jsonl", VideoOptions(frames=4)), tmp_path / "f.lance", quiet=True
    )
    rows = rows_by_id(several.dataset.uri)
    assert sorted(rows) == ["a#f0", "a#f1", "a#f2", "a#f3"]
    # centres of 4 equal parts of [1, 3): 1.25, 1.75, 2.25, 2.75 s -> frames 12, 17, 22, 27
    levels = [grey(rows[f"a#f{k}"]["image"]) for k in range(4)]
    assert all(abs(r - 5 * f) <= 2 for r, f in zip(levels, (12, 17, 22, 27), strict=True)), levels
    assert len({rows[f"a#f{k}"]["audio"] for k in range(4)}) == 1  # each frame paired with the clip's track
    assert_track(rows["a#f0"]["audio"], 1.0, 2.0)


def test_late_window_is_reached_by_seeking_and_matroska_opus(tmp_path):
    write_video(tmp_path / "long.mp4", 40.0, fps=1, rate=8000)
    write_video(tmp_path / "c.mkv", 3.0, fmt="matroska", rate=48000)
    (tmp_path / "m.csv").write_text("id,video,start,end\nlate,long.mp4,31.5,33.5\nmkv,c.mkv,0.5,2\n")
    rows = rows_by_id(ingest(tmp_path / "m.csv", tmp_path / "l.lance", quiet=True).dataset.uri)
    assert_track(rows["late"]["audio"], 31.5, 2.0, rate=8000)
    assert abs(grey(rows["late"]["image"]) - 5 * 32) <= 2
    assert_track(rows["mkv"]["audio"], 0.5, 1.5, rate=48000)


def test_video_without_audio_track_keeps_its_frame_or_is_rejected(tmp_path):
    write_video(tmp_path / "mute.mp4", 2.0, audio=False)
    (tmp_path / "m.csv").write_text("id,video\nmute,mute.mp4\n")
    checked = check_row({"row": 0, "id": "mute", "video": {"ref": str(tmp_path / "mute.mp4")}})
    assert checked["audio"] is None and checked["image"] is not None
    (note,) = checked["notes"]
    assert (note["kind"], note["id"], note["modality"]) == ("no_audio_track", "mute", "audio")
    assert note["reason"] == "video has no audio track; the row keeps its frame"
    assert note["file"] == str(tmp_path / "mute.mp4")
    kept = ingest(tmp_path / "m.csv", tmp_path / "k.lance", quiet=True)
    row = rows_by_id(kept.dataset.uri)["mute"]
    assert row["audio"] is None and abs(grey(row["image"]) - 5 * 10) <= 2
    assert [n["kind"] for n in kept.notes] == [
        "no_audio_track"
    ]  # the user is told, on screen and in the report
    assert "kept with a note 1: no_audio_track 1" in kept.summary()
    (reported,) = json.loads((tmp_path / "k.report.json").read_text())["notes"]
    assert (reported["id"], reported["file"]) == ("mute", str(tmp_path / "mute.mp4"))

    with pytest.raises(DataError, match="all 1 rows were rejected"):
        ingest(
            VideoInput(tmp_path / "m.csv", VideoOptions(require_audio=True)), tmp_path / "r.lance", quiet=True
        )
    report = json.loads((tmp_path / "r.report.json").read_text())
    (item,) = report["rejected"]
    assert (item["kind"], item["modality"], item["file"]) == (
        "no_audio_track",
        "video",
        str(tmp_path / "mute.mp4"),
    )
    assert "no audio track" in item["reason"]


def test_bad_videos_are_reported_naming_the_file(tmp_path):
    write_video(tmp_path / "ok.mp4", 2.0)
    write_video(tmp_path / "sound_only.mp4", 2.0, video=False)
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    cut = (tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(cut[: len(cut) // 3])
    (tmp_path / "m.csv").write_text(
        "id,video,start,end,text\n"
        "ok,ok.mp4,,,fine\n"
        "sound_only,sound_only.mp4,,,no frames\n"
        "junk,junk.mp4,,,not a video\n"
        "missing,nowhere.mp4,,,no file\n"
        "late,ok.mp4,5,,after the end\n"
        "backwards,ok.mp4,1.5,1.0,end before start\n"
        "cut,cut.mp4,,,truncated file\n"
    )
    result = ingest(tmp_path / "m.csv", tmp_path / "b.lance", quiet=True)
    assert result.written == 1
    by_id = {r["id"]: r for r in result.rejected}
    assert by_id["sound_only"]["kind"] == "no_frames" and by_id["sound_only"]["file"].endswith(
        "sound_only.mp4"
    )
    assert by_id["junk"]["kind"] == "corrupt_video" and "does not open" in by_id["junk"]["reason"]
    assert by_id["missing"]["kind"] == "missing_file" and by_id["missing"]["file"].endswith("nowhere.mp4")
    assert (
        by_id["late"]["kind"] == "bad_clip_window"
        and "past the end of the 2.00 s video" in by_id["late"]["reason"]
    )
    assert by_id["backwards"]["kind"] == "bad_clip_window"
    assert by_id["cut"]["kind"] in ("corrupt_video", "no_frames") and by_id["cut"]["file"].endswith("cut.mp4")
    assert all(r["modality"] == "video" for r in result.rejected)
    assert "sound_only.mp4" in (tmp_path / "b.report.json").read_text()


def test_folder_tree_of_videos_via_cli(tmp_path):
    for label in ("dog", "engine"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        write_video(tmp_path / "tree" / label / "clip1.mp4", 1.0)
    (tmp_path / "tree" / "dog" / "clip1.txt").write_text("a dog barks\n")
    out = tmp_path / "tree.lance"
    proc = subprocess.run(
        [sys.executable, "-m", "mmpt", "ingest", str(tmp_path / "tree"), "--out", str(out), "-q"]
        + ["--video-frame", "0", "--video-image-format", "png"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = rows_by_id(out)
    assert sorted(rows) == ["dog/clip1", "engine/clip1"]
    assert (rows["dog/clip1"]["label"], rows["dog/clip1"]["text"]) == ("dog", "a dog barks")
    assert (
        rows["engine/clip1"]["image"][:4] == b"\x89PNG" and grey(rows["engine/clip1"]["image"]) <= 3
    )  # frame 0
    assert_track(rows["engine/clip1"]["audio"], 0.0, 1.0)

    bad = subprocess.run(
        [sys.executable, "-m", "mmpt", "ingest", str(tmp_path / "tree"), "--out", str(tmp_path / "x.lance")]
        + ["--video-frame", "later"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "video frame must be middle" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_video_options_refuse_bad_values():
    with pytest.raises(DataError, match="fraction of the clip"):
        VideoOptions(frame=1.5)
    with pytest.raises(DataError, match="choose one frame position"):
        VideoOptions(frame=0.1, frames=3)
    with pytest.raises(DataError, match="jpeg or png"):
        VideoOptions(image_format="gif")
    with pytest.raises(DataError, match=">= 1"):
        VideoOptions(frames=0)
