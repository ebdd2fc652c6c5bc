"""Shared by the dataset-recipe tests: load a recipe by path, write tiny real media, read back `data info`."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

RECIPES = Path(__file__).resolve().parents[1] / "datasets"


def load_recipe(name: str) -> Any:
    """Import `datasets/<name>.py` as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_recipe(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    """`python datasets/<name>.py ARGS` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(RECIPES / f"{name}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def data_info(uri: Path) -> dict[str, Any]:
    """`mmpt data info --json URI` in a fresh process, parsed."""
    proc = subprocess.run(
        [sys.executable, "-m", "mmpt", "data", "info", "--json", str(uri)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def stats(uri: Path) -> dict[str, Any]:
    """The same figures in this process (faster where the CLI is not what a test checks)."""
    from mmpt.store.dataset import open_dataset

    return open_dataset(uri).stats()


def tone(seed: int, seconds: float = 0.2, rate: int = 16_000, channels: int = 1) -> np.ndarray:
    """A short distinct sine per seed, float32 (frames, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.2 * np.sin(2 * np.pi * (220 + 37 * seed) * t).astype("float32")
    return np.stack([wave] * channels, axis=1)


def write_audio(path: Path, seed: int = 0, fmt: str | None = None, rate: int = 16_000, **kw: Any) -> bytes:
    """A real WAV / FLAC / OGG file (format from the suffix unless given); returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fmt = fmt or path.suffix.lstrip(".").upper()
    sf.write(buf, tone(seed, rate=rate, **kw), rate, format=fmt)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def image_bytes(seed: int = 0, fmt: str = "JPEG", size: tuple[int, int] = (48, 32)) -> bytes:
    """A small real image with a seed-dependent colour."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 3)) * 80 + seed * 23 % 170).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, seed: int = 0, fmt: str | None = None) -> bytes:
    """A real JPEG / PNG / WebP file (format from the suffix unless given); returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower().lstrip(".")
    data = image_bytes(seed, fmt or {"jpg": "JPEG", "jpeg": "JPEG"}.get(suffix, suffix.upper()))
    path.write_bytes(data)
    return data


def write_video(path: Path, seed: int = 0, seconds: float = 1.0, audio: bool = True) -> None:
    """A real MP4 (H.264 frames, AAC track unless `audio` is False), written with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    fps, rate = 8, 16_000
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = out.add_stream("aac", rate=rate) if audio else None
        for k in range(int(seconds * fps)):
            frame = np.full((32, 32, 3), (seed * 40 + k * 5) % 255, dtype="uint8")
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            samples = tone(seed, seconds, rate)[:, 0][None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in sound.encode(frame):
                out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A tar shard holding `members` (name, bytes) in order, as webdataset writers make them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
