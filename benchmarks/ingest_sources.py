"""Ingest throughput of video files and webdataset shards; prints one JSON object (medians of repeated runs).

    python benchmarks/ingest_sources.py [--videos 36] [--seconds 5] [--wds-rows 300] [--repeats 3] [--workers 2]

Writes, in a temp folder: `--videos` H.264 + AAC clips of 320x240 (25 fps, 44.1 kHz stereo) with a CSV manifest
of clip windows (VGGSound style), img2dataset-style shards (256x256 JPEG, caption, json) and LAION-Audio-style
shards (10 s 48 kHz FLAC, json). Then times `mmpt ingest` on each, as a child process, `--repeats` times
(`rows_per_s`: start-up and the worker pool included, which dominate inputs this small), and reading plus
validating every row in this process (`validate_rows_per_s_1_core`: the rate one worker sustains).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from mmpt.store.validate import CheckOptions


def write_clip(path: Path, seconds: float, rng: np.random.Generator) -> None:
    """A 320x240 H.264 clip with a moving gradient and an AAC stereo track of tones and noise."""
    import av

    fps, rate = 25, 44100
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "stereo"
        y, x = np.mgrid[0:240, 0:320]
        tint = rng.integers(0, 255, 3)
        for i in range(int(seconds * fps)):
            pixels = np.stack([(x + 4 * i + tint[c] + y * c) % 256 for c in range(3)], axis=-1).astype(
                np.uint8
            )
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.2 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.02 * rng.standard_normal(t.size)
        stereo = np.stack([tone, 0.7 * tone]).astype(np.float32)
        step = audio.codec_context.frame_size or 1024
        for s in range(0, stereo.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(stereo[:, s : s + step]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = rate, s
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


def write_shards(folder: Path, rows: int, per_shard: int, kind: str, rng: np.random.Generator) -> list[Path]:
    """Shards of `rows` samples: "image" (JPEG + txt + json, img2dataset) or "audio" (FLAC + json)."""
    import soundfile as sf
    from PIL import Image

    folder.mkdir(parents=True)
    paths = []
    for first in range(0, rows, per_shard):
        path = folder / f"{first // per_shard:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for k in range(first, min(rows, first + per_shard)):
                key = f"{k:09d}"
                members: list[tuple[str, bytes]] = []
                buf = io.BytesIO()
                if kind == "image":
                    pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
                    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
                    members += [
                        (f"{key}.jpg", buf.getvalue()),
                        (f"{key}.txt", f"a photo number {k}".encode()),
                    ]
                    meta = {"url": f"https://example.org/{key}.jpg", "width": 256, "height": 256, "key": key}
                else:
                    t = np.arange(480_000) / 48_000
                    clip = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.01 * rng.standard_normal(
                        t.size
                    )
                    sf.write(buf, clip.astype(np.float32), 48_000, format="FLAC")
                    members.append((f"{key}.flac", buf.getvalue()))
                    meta = {"text": [f"a sound number {k}", "a tone"], "tag": ["tone"], "duration": 10.0}
                members.append((f"{key}.json", json.dumps(meta).encode()))
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def time_ingest(sources: list[str], out: Path, workers: int, repeats: int) -> dict[str, float]:
    """Median wall-clock rows/s of `mmpt ingest` (child process, start-up included) over `repeats` runs."""
    wall, inside = [], []
    for _ in range(repeats):
        cmd = [sys.executable, "-m", "mmpt", "ingest", *sources, "--out", str(out), "--overwrite"]
        cmd += ["--workers", str(workers), "--quiet", "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"ingest failed: {proc.stderr.strip()}")
        summary = json.loads(proc.stdout)
        wall.append(summary["read"] / seconds)
        inside.append(summary["rows_per_s"])
    return {
        "rows": summary["written"],
        "rows_per_s": round(statistics.median(wall), 1),
        "rows_per_s_in_process": round(statistics.median(inside), 1),
        "runs_rows_per_s": [round(v, 1) for v in wall],
    }


def time_checks(source: object, repeats: int) -> float:
    """Median rows/s of reading and validating every row in this process (one core, no start-up, no write):
    the steady rate one worker sustains."""
    from mmpt.store.manifest import open_source
    from mmpt.store.validate import check_chunk

    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = sum(len(check_chunk((chunk, CheckOptions()))) for chunk in open_source(source).chunks(64))
        rates.append(rows / (time.perf_counter() - t0))
    return round(statistics.median(rates), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=36)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--wds-rows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        (root / "clips").mkdir()
        lines = ["id,video,start_seconds,end_seconds,label"]
        for k in range(args.videos):
            write_clip(root / "clips" / f"{k:04d}.mp4", args.seconds, rng)
            lines.append(f"clip{k:04d},clips/{k:04d}.mp4,0.5,{args.seconds - 0.5},class{k % 5}")
        (root / "clips.csv").write_text("\n".join(lines) + "\n")
        images = write_shards(root / "img", args.wds_rows, 100, "image", rng)
        audio = write_shards(root / "aud", max(1, args.wds_rows // 3), 50, "audio", rng)
        files_s = time.perf_counter() - t0
        load_before = os.getloadavg()[0]

        video = time_ingest([str(root / "clips.csv")], root / "v.lance", args.workers, args.repeats)
        pattern = str(root / "img" / f"{{00000..{len(images) - 1:05d}}}.tar")
        wds_image = time_ingest([pattern], root / "i.lance", args.workers, args.repeats)
        wds_audio = time_ingest([str(p) for p in audio], root / "a.lance", args.workers, args.repeats)
        video["validate_rows_per_s_1_core"] = time_checks(str(root / "clips.csv"), args.repeats)
        wds_image["validate_rows_per_s_1_core"] = time_checks(pattern, args.repeats)
        wds_audio["validate_rows_per_s_1_core"] = time_checks([str(p) for p in audio], args.repeats)

    print(
        json.dumps(
            {
                "video": {**video, "clip": f"{args.seconds:g} s 320x240 H.264 25 fps + AAC 44.1 kHz stereo"},
                "webdataset_image_text": {
                    **wds_image,
                    "sample": "256x256 JPEG + txt + json",
                    "shards": len(images),
                },
                "webdataset_audio": {**wds_audio, "sample": "10 s 48 kHz FLAC + json", "shards": len(audio)},
                "repeats": args.repeats,
                "workers": args.workers,
                "inputs_written_s": round(files_s, 1),
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_avg_1min_before": round(load_before, 2),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
