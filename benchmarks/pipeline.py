"""Data pipeline capacity on CPU: decode + transform rows/s per core, per modality and combined; prints one JSON object.

    python benchmarks/pipeline.py [--rows 128] [--batch-size 32] [--workers 1,2] [--repeats 3] [--preset base]

Builds realistic rows (seeded): ~500x375 photo-like images as JPEG and WebP, 10 s 48 kHz stereo clips as FLAC
and WAV, captions; ingests them with `mmpt.ingest` into a temp Lance dataset; then times mmpt's own batch
reader (`LanceBatchReader`, what every DataLoader worker runs) for the preset's InputSpec with one torch
thread, per modality and combined, and the real DataLoader (`build_loader`) with 1..N workers.
`rows_per_s_per_core` is rows over the process's CPU seconds (robust on a shared machine); `rows_per_s`
is wall-clock. `--ready` also ingests a training-ready copy (`image_max_side`, `audio_rate`) and times it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

WORDS = (
    "a dog cat bird car tree house river street man woman child playing running sitting red blue green "
    "small large old young under over near with on the in at of by beach park city field night morning"
).split()


def photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A photo-like RGB image: smooth colour gradients, a few soft blobs and sensor-like noise (uint8)."""
    from PIL import Image

    coarse = (rng.random((4, 5, 3)) * 255).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(6):
        cy, cx, r = rng.random() * height, rng.random() * width, 15 + rng.random() * 80
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        base += blob * (rng.random(3) * 160 - 80)
    texture = np.sin(xx / (3 + 6 * rng.random())) * np.cos(yy / (3 + 6 * rng.random()))
    base += 10 * texture[..., None] + rng.normal(0, 6, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=90 if fmt == "JPEG" else 85)
    return buf.getvalue()


def clip(rng: np.random.Generator, rate: int, seconds: float) -> np.ndarray:
    """A stereo clip: a few tones with vibrato and envelopes over coloured noise, float32 in [-1, 1]."""
    t = np.arange(int(rate * seconds), dtype=np.float64) / rate
    wave = np.zeros_like(t)
    for _ in range(4):
        f = 80 + rng.random() * 3000
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.random() * 0.5 * t + rng.random() * 6)
        wave += 0.12 * env * np.sin(2 * np.pi * f * t + 3 * np.sin(2 * np.pi * 5 * t))
    noise = np.cumsum(rng.normal(0, 1, t.shape)) * 0.002
    noise -= np.convolve(noise, np.ones(256) / 256, mode="same")  # drift removed: brown-ish noise
    left = wave + noise + rng.normal(0, 0.01, t.shape)
    right = 0.8 * wave + np.roll(noise, 37) + rng.normal(0, 0.01, t.shape)
    return np.clip(np.stack([left, right], axis=1), -1, 1).astype(np.float32)


def encode_audio(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def make_rows(n: int, seed: int, size: tuple[int, int], rate: int, seconds: float) -> tuple[Any, dict]:
    """n rows (image formats alternate JPEG/WebP, audio FLAC/WAV) as a DataFrame, and their mean sizes."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    sizes: dict[str, list[int]] = {"JPEG": [], "WEBP": [], "FLAC": [], "WAV": []}
    for i in range(n):
        image_fmt, audio_fmt = ("JPEG", "WEBP")[i % 2], ("FLAC", "WAV")[i % 2]
        w, h = size if rng.random() < 0.75 else size[::-1]
        image = encode_image(photo(rng, w, h), image_fmt)
        audio = encode_audio(clip(rng, rate, seconds), rate, audio_fmt)
        sizes[image_fmt].append(len(image))
        sizes[audio_fmt].append(len(audio))
        caption = " ".join(rng.choice(WORDS, size=int(rng.integers(8, 20))))
        rows.append({"id": f"r{i:05d}", "text": caption, "image": image, "audio": audio, "split": "train"})
    return pd.DataFrame(rows), {k: round(float(np.mean(v)) / 1024, 1) for k, v in sizes.items() if v}


def preset_spec(name: str) -> Any:
    """The preset's InputSpec without building its towers (image size, normalisation, audio rate and clip)."""
    from mmpt.models.image_text import image_size
    from mmpt.models.presets import preset_config
    from mmpt.models.spec import InputSpec

    cfg = preset_config(name)
    return InputSpec(
        image_size=image_size(cfg),
        image_mean=(cfg.image_mean[0], cfg.image_mean[1], cfg.image_mean[2]),
        image_std=(cfg.image_std[0], cfg.image_std[1], cfg.image_std[2]),
        sample_rate=cfg.audio.sample_rate,
        clip_samples=cfg.audio.clip_samples,
    )


def time_reader(
    uri: str,
    version: int,
    spec: Any,
    modalities: tuple[str, ...],
    positions: np.ndarray,
    batch_size: int,
    repeats: int,
    fast_image_decode: bool = True,
) -> dict[str, float]:
    """Best-of-`repeats` pass of LanceBatchReader over `positions` in this process (one torch thread)."""
    from mmpt.data.reader import LanceBatchReader
    from mmpt.data.sampler import BatchItem

    reader = LanceBatchReader(
        uri, version, spec, modalities, train=True, seed=0, fast_image_decode=fast_image_decode
    )
    chunks = [positions[i : i + batch_size] for i in range(0, len(positions), batch_size)]

    def item(k: int, chunk: np.ndarray) -> BatchItem:
        return BatchItem(0, k, chunk, np.arange(len(chunk)), np.zeros(len(chunk), bool))

    reader[item(0, chunks[0])]  # warm-up: opens Lance, builds the transform and the tokenizer
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for k, chunk in enumerate(chunks):
            reader[item(k, chunk)]
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    n = len(positions)
    return {
        "rows_per_s_per_core": round(n / best_cpu, 1),
        "rows_per_s": round(n / best_wall, 1),
        "cpu_ms_per_row": round(1000 * best_cpu / n, 3),
    }


def time_loader(
    uri: str, spec: Any, modalities: tuple[str, ...], batch_size: int, workers: int, epochs: int
) -> dict[str, float]:
    """Rows/s of build_loader's DataLoader with `workers` processes, after one warm-up epoch."""
    from mmpt.data.loader import build_loader

    loader = build_loader(uri, spec, modalities, "train", batch_size, train=True, num_workers=workers)
    with loader:
        for _ in loader:  # warm-up: starts the persistent workers
            pass
        rows, t0 = 0, time.perf_counter()
        for epoch in range(1, epochs + 1):
            loader.set_epoch(epoch)
            for batch in loader:
                rows += len(batch["ids"])
        seconds = time.perf_counter() - t0
    return {"rows_per_s": round(rows / seconds, 1), "rows_per_s_per_core": round(rows / seconds / workers, 1)}


def measure(uri: str, version: int, spec: Any, n: int, args: argparse.Namespace) -> dict[str, Any]:
    all_rows = np.arange(n, dtype=np.int64)
    first, second = all_rows[0::2], all_rows[1::2]  # even rows: JPEG + FLAC; odd rows: WebP + WAV
    runs = {
        "image.jpeg": (("image",), first),
        "image.webp": (("image",), second),
        "image": (("image",), all_rows),
        "audio.flac": (("audio",), first),
        "audio.wav": (("audio",), second),
        "audio": (("audio",), all_rows),
        "text": (("text",), all_rows),
        "image_text": (("image", "text"), all_rows),
        "tri_modal": (("image", "text", "audio"), all_rows),
    }
    out: dict[str, Any] = {}
    for key, (modalities, positions) in runs.items():
        out[key] = time_reader(uri, version, spec, modalities, positions, args.batch_size, args.repeats)
    loader: dict[str, Any] = {}
    for name, modalities in (("image_text", ("image", "text")), ("tri_modal", ("image", "text", "audio"))):
        loader[name] = {
            str(w): time_loader(uri, spec, modalities, args.batch_size, w, args.epochs) for w in args.workers
        }
    out["loader"] = loader
    return out


def large_jpegs(out: Path, spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """JPEG rows/s for 1024x768 photos (where PIL's draft decodes at half size) with the fast eval path and
    with open_clip's exact one (`fast_image_decode=False`)."""
    import pandas as pd

    from mmpt.store.ingest import ingest

    rng = np.random.default_rng(args.seed + 1)
    n = max(args.batch_size, args.rows // 4)
    rows = [
        {"id": f"l{i}", "image": encode_image(photo(rng, 1024, 768), "JPEG"), "split": "train"}
        for i in range(n)
    ]
    ds = ingest(pd.DataFrame(rows), out, quiet=True, workers=1).dataset
    positions = np.arange(n, dtype=np.int64)
    return {
        name: time_reader(
            ds.uri, ds.version, spec, ("image",), positions, args.batch_size, args.repeats, fast
        )
        for name, fast in (("fast", True), ("exact", False))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="passes per in-process figure (best is kept)")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per DataLoader figure")
    parser.add_argument("--workers", default=None, help="comma-separated worker counts (default 1..cores)")
    parser.add_argument("--preset", default="base", help="model preset whose InputSpec is used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ready",
        action="store_true",
        help="also time a training-ready copy (--image-max-side 320 --audio-rate 16000)",
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    args.workers = [int(w) for w in args.workers.split(",")] if args.workers else list(range(1, cores + 1))

    import torch

    torch.set_num_threads(1)
    from mmpt.store.ingest import ingest

    spec = preset_spec(args.preset)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        df, sizes_kb = make_rows(args.rows, args.seed, (500, 375), 48_000, 10.0)
        generate_s = time.perf_counter() - t0
        result = ingest(df, Path(tmp) / "bench.lance", quiet=True, workers=1)
        ds = result.dataset
        report: dict[str, Any] = {
            "rows": args.rows,
            "batch_size": args.batch_size,
            "preset": args.preset,
            "spec": {
                "image_size": spec.image_size,
                "sample_rate": spec.sample_rate,
                "clip_samples": spec.clip_samples,
            },
            "inputs": {
                "image": "~500x375 photo-like, JPEG q90 / WebP q85",
                "audio": "10 s 48 kHz stereo 16-bit FLAC / WAV",
                "mean_kb": sizes_kb,
            },
            "generate_s": round(generate_s, 1),
        }
        report.update(measure(ds.uri, ds.version, spec, args.rows, args))
        report["image.jpeg_1024x768"] = large_jpegs(Path(tmp) / "large.lance", spec, args)
        if args.ready:
            ready = ingest(
                df,
                Path(tmp) / "ready.lance",
                quiet=True,
                workers=1,
                image_max_side=320,
                audio_rate=spec.sample_rate,
            )
            report["ready"] = {
                "image_max_side": 320,
                "audio_rate": spec.sample_rate,
                **measure(ready.dataset.uri, ready.dataset.version, spec, args.rows, args),
            }
    report["machine"] = {
        "cpu_count": cores,
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
