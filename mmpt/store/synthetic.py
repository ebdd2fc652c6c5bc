"""Built-in demo data: coloured shapes, tones and captions that share meaning, so a tiny model learns on CPU.

Colour sets the image hue and the audio pitch; shape sets the drawn outline and the audio timbre; the caption
names both among distractor words (size, position, background). Row i depends only on (seed, i), so the same
seed gives the same bytes at any size and any batch size.
"""

from __future__ import annotations

import csv
import io
import shutil
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from mmpt.errors import DataError
from mmpt.store.pool import default_workers, ordered_map
from mmpt.store.schema import BLOB_MODALITIES, base_schema, sha_column
from mmpt.store.splits import split_for_id
from mmpt.store.write import rows_to_batch, sha256_hex, write_batches

IMAGE_SIZE = 64
SAMPLE_RATE = 16_000
CLIP_SECONDS = 1.0

# Fundamentals a fifth apart (ratio 1.5), so pitch classes never overlap even with +-3 % detune.
COLOURS: dict[str, tuple[tuple[int, int, int], float]] = {
    "red": ((220, 40, 40), 220.0),
    "green": ((40, 170, 60), 330.0),
    "blue": ((40, 80, 225), 495.0),
    "yellow": ((235, 215, 40), 742.5),
    "purple": ((150, 55, 195), 1113.75),
}
# Timbre per shape as harmonic amplitudes (harmonic k -> weight); the tables are band-limited per pitch.
SHAPES: dict[str, dict[int, float]] = {
    "circle": {1: 1.0},  # pure sine
    "square": {k: 1.0 / k for k in range(1, 32, 2)},  # square wave: odd harmonics
    "triangle": {k: 1.0 / k for k in range(1, 32)},  # sawtooth: every harmonic
    "star": {1: 0.4, 2: 1.0, 3: 0.8, 5: 0.6, 6: 0.3},  # bright bell-like profile
}
SIZES = ((11, "small"), (16, "medium"), (99, "large"))
TEMPLATES = (
    "a {size} {colour} {shape} {where}",
    "there is a {colour} {shape} {where}",
    "a {colour} {shape} on a {bg} background",
    "the {shape} is {colour} and {size}",
    "picture of one {size} {colour} {shape}",
    "{where}, a {colour} {shape}",
    "a {shape}, {colour}, {where}, {bg} backdrop",
    # the wording of the default zero-shot prompt ("a photo of a {label}"): a word no caption used kept an
    # untrained embedding that pulled the class prompts apart from the captions (zero-shot colour 0.62 on seed 1)
    "a photo of a {size} {colour} {shape}",
)
P_NO_IMAGE, P_NO_AUDIO, P_NO_TEXT = 0.05, 0.05, 0.03
_TABLE = 2048


def labels() -> list[str]:
    """Every "<colour> <shape>" label the demo data can hold, in a fixed order."""
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def demo_row(index: int, seed: int = 0) -> dict[str, Any]:
    """Row `index` of the demo corpus for `seed`: id, text, image (PNG), audio (WAV), label, split, metadata."""
    rng = np.random.default_rng([seed, index])
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    shape = list(SHAPES)[int(rng.integers(len(SHAPES)))]
    row_id = f"demo-{index:06d}"
    image, size, where, bg = _draw(rng, colour, shape)
    audio = _tone(rng, colour, shape)
    caption = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(
        size=size, colour=colour, shape=shape, where=where, bg=bg
    )
    missing = rng.random()
    if missing < P_NO_IMAGE:
        image = None
    elif missing < P_NO_IMAGE + P_NO_AUDIO:
        audio = None
    elif missing < P_NO_IMAGE + P_NO_AUDIO + P_NO_TEXT:
        caption = None
    return {
        "id": row_id,
        "text": caption,
        "image": image,
        "audio": audio,
        "label": f"{colour} {shape}",
        "split": split_for_id(row_id),
        "source": f"synthetic:{seed}",
        "colour": colour,
        "shape": shape,
    }


def demo_rows(n_rows: int, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Rows start .. start+n_rows-1 of the demo corpus, generated lazily."""
    for index in range(start, start + n_rows):
        yield demo_row(index, seed)


def demo_frame(n_rows: int = 600, seed: int = 0) -> Any:
    """The first `n_rows` demo rows as a pandas DataFrame (PNG/WAV bytes in `image`/`audio`), ready for `mmpt.ingest`.

    For trying the Python API on data shaped like a user's own table.
    """
    import pandas as pd

    if n_rows < 1:
        raise DataError("the demo frame needs at least one row")
    return pd.DataFrame(list(demo_rows(n_rows, seed)))


def demo_schema() -> pa.Schema:
    """Dataset schema of the demo corpus: the core columns plus `colour` and `shape` metadata."""
    return base_schema({"colour": pa.string(), "shape": pa.string()})


def make_demo_dataset(
    out: str | Path,
    n_rows: int = 3000,
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    batch_rows: int = 256,
):
    """Write the demo corpus to a Lance dataset at `out` and open it (rows generated on every core when large).

    An existing dataset built with the same seed and size is reused; anything else at `out` needs `overwrite`.
    """
    from mmpt.store.dataset import open_dataset

    if n_rows < 1:
        raise DataError("the demo dataset needs at least one row")
    out = Path(out)
    if out.exists():
        if not overwrite:
            existing = open_dataset(out)
            if len(existing) == n_rows and _demo_seed(existing) == seed:
                return existing
            raise DataError(
                f"{out} already exists and is not the {n_rows}-row demo for seed {seed}; pass overwrite"
            )
        shutil.rmtree(out)
    if workers is None:
        workers = default_workers() if n_rows >= 2000 else 1
    schema = demo_schema()
    tasks = [(min(batch_rows, n_rows - start), seed, start) for start in range(0, n_rows, batch_rows)]
    batches = ordered_map(_demo_batch, tasks, workers)
    write_batches((rows_to_batch(rows, schema) for rows in batches), out, schema, mode="create")
    return open_dataset(out)


def _demo_batch(task: tuple[int, int, int]) -> list[dict[str, Any]]:
    count, seed, start = task
    rows = list(demo_rows(count, seed, start))
    for row in rows:  # hash in the worker, off the writing thread
        for modality in BLOB_MODALITIES:
            if row[modality] is not None:
                row[sha_column(modality)] = sha256_hex(row[modality])
    return rows


def write_demo_files(out_dir: str | Path, n_rows: int, seed: int = 0, start: int = 0) -> Path:
    """Write demo rows as files (images/*.png, audio/*.wav) plus manifest.csv, the layout `mmpt ingest` reads."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "audio", "text", "label", "split", "colour", "shape"])
        for row in demo_rows(n_rows, seed, start):
            image = audio = ""
            if row["image"] is not None:
                image = f"images/{row['id']}.png"
                (out_dir / image).write_bytes(row["image"])
            if row["audio"] is not None:
                audio = f"audio/{row['id']}.wav"
                (out_dir / audio).write_bytes(row["audio"])
            writer.writerow(
                [
                    row["id"],
                    image,
                    audio,
                    row["text"] or "",
                    row["label"],
                    row["split"],
                    row["colour"],
                    row["shape"],
                ]
            )
    return manifest


def _demo_seed(ds) -> int | None:
    source = ds.lance.take([0], columns=["source"]).column(0)[0].as_py() or ""
    prefix = "synthetic:"
    return int(source[len(prefix) :]) if source.startswith(prefix) else None


# --- image -------------------------------------------------------------------------------------------


def _draw(rng: np.random.Generator, colour: str, shape: str) -> tuple[bytes, str, str, str]:
    n = IMAGE_SIZE
    # Background: a desaturated tint with a gradient and pixel noise, so colour is never the background's.
    level = rng.uniform(40, 200)
    tint = rng.uniform(-20, 20, size=3)
    ramp = np.linspace(-1.0, 1.0, n)
    gx, gy = rng.uniform(-25, 25, size=2)
    bg = level + tint[None, None, :] + gx * ramp[None, :, None] + gy * ramp[:, None, None]
    bg = bg + rng.normal(0.0, rng.uniform(3, 14), size=(n, n, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")

    radius = float(rng.uniform(7, 20))
    cx, cy = rng.uniform(radius + 2, n - radius - 2, size=2)
    angle = float(rng.uniform(0, 2 * np.pi))
    base = np.array(COLOURS[colour][0], dtype=float)
    fill = tuple(int(v) for v in np.clip(base + rng.uniform(-25, 25, size=3), 0, 255))
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, radius, angle), fill=fill)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)

    size = next(word for limit, word in SIZES if radius < limit)
    dx, dy = cx - n / 2, cy - n / 2
    if max(abs(dx), abs(dy)) < 7:
        where = "in the middle"
    elif abs(dy) >= abs(dx):
        where = "near the top" if dy < 0 else "near the bottom"
    else:
        where = "on the left" if dx < 0 else "on the right"
    bg_word = "dark" if level < 90 else ("grey" if level < 150 else "light")
    return buf.getvalue(), size, where, bg_word


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        radii, count = [r * 0.9], 4
    elif shape == "triangle":
        radii, count = [r], 3
    else:  # star: alternate outer and inner radius
        radii, count = [r, r * 0.45], 10
    points = []
    for k in range(count):
        theta = angle + 2 * np.pi * k / count
        rad = radii[k % len(radii)]
        points.append((cx + rad * np.cos(theta), cy + rad * np.sin(theta)))
    return points


# --- audio -------------------------------------------------------------------------------------------


@cache
def _wavetable(colour: str, shape: str) -> np.ndarray:
    """One period of the shape's timbre, band-limited below 7 kHz for the colour's highest detuned pitch."""
    f0 = COLOURS[colour][1] * 1.03
    phase = np.arange(_TABLE) / _TABLE
    table = np.zeros(_TABLE)
    for k, weight in SHAPES[shape].items():
        if k * f0 < 7000:
            table += weight * np.sin(2 * np.pi * k * phase)
    return table / np.abs(table).max()


def _tone(rng: np.random.Generator, colour: str, shape: str) -> bytes:
    length = int(SAMPLE_RATE * CLIP_SECONDS)
    f0 = COLOURS[colour][1] * rng.uniform(0.97, 1.03)
    onset = int(rng.uniform(0.0, 0.3) * SAMPLE_RATE)
    duration = int(rng.uniform(0.4, 0.7) * SAMPLE_RATE)
    attack = max(1, int(rng.uniform(0.005, 0.05) * SAMPLE_RATE))
    amplitude = rng.uniform(0.3, 0.8)
    noise = rng.uniform(0.003, 0.03)
    t = np.arange(duration)
    index = ((rng.random() + f0 * t / SAMPLE_RATE) * _TABLE).astype(np.int64) % _TABLE
    envelope = np.minimum(t / attack, 1.0) * np.exp(-3.0 * t / duration)
    wave = rng.standard_normal(length, dtype=np.float32).astype(np.float64) * noise
    end = min(length, onset + duration)
    wave[onset:end] += amplitude * envelope[: end - onset] * _wavetable(colour, shape)[index[: end - onset]]
    pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return _wav_bytes(pcm, SAMPLE_RATE)


def _wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """A canonical 44-byte-header PCM16 WAV around raw little-endian samples."""
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * channels * 2,
        channels * 2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm
