"""The built-in demo corpus: deterministic bytes, shared meaning across modalities, planned gaps."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmpt.errors import DataError
from mmpt.store.splits import split_for_id
from mmpt.store.synthetic import COLOURS, SHAPES, demo_row, demo_rows, labels, make_demo_dataset


def test_same_seed_same_bytes_and_different_seed_differs():
    a = list(demo_rows(12, seed=3))
    b = list(demo_rows(12, seed=3))
    assert a == b
    c = list(demo_rows(12, seed=4))
    assert [r["image"] for r in a] != [r["image"] for r in c]
    # Row i does not depend on where generation starts.
    assert list(demo_rows(4, seed=3, start=8)) == a[8:]


def test_datasets_built_twice_are_identical(tmp_path, demo_dataset):
    again = make_demo_dataset(tmp_path / "again.lance", n_rows=len(demo_dataset), seed=0)
    cols = ["id", "text", "label", "split", "image_sha256", "audio_sha256", "colour", "shape"]
    assert again.lance.to_table(columns=cols).equals(demo_dataset.lance.to_table(columns=cols))
    positions = list(range(0, len(again), 37))
    for modality in ("image", "audio"):
        assert again.read_blobs(modality, positions) == demo_dataset.read_blobs(modality, positions)


def test_rows_follow_the_contract(demo_dataset):
    table = demo_dataset.lance.to_table(
        columns=["id", "text", "label", "split", "source", "image_sha256", "audio_sha256", "colour", "shape"]
    ).to_pylist()
    assert [r["id"] for r in table] == [f"demo-{i:06d}" for i in range(len(table))]
    for r in table:
        assert r["label"] == f"{r['colour']} {r['shape']}" and r["label"] in labels()
        assert r["split"] == split_for_id(r["id"])
        assert r["source"] == "synthetic:0"
        present = [r["image_sha256"] is not None, r["text"] is not None, r["audio_sha256"] is not None]
        assert any(present) and sum(present) >= 2  # at most one modality is missing, never all
        if r["text"] is not None:
            assert r["colour"] in r["text"] and r["shape"] in r["text"]
    n = len(table)
    missing = {
        m: sum(r[c] is None for r in table) / n
        for m, c in (("image", "image_sha256"), ("audio", "audio_sha256"), ("text", "text"))
    }
    assert 0.01 < missing["image"] < 0.10 and 0.01 < missing["audio"] < 0.10 and 0.0 < missing["text"] < 0.07
    splits = [r["split"] for r in table]
    assert 0.7 < splits.count("train") / n < 0.9 and splits.count("val") > 10 and splits.count("test") > 10


def test_image_shows_the_colour_and_audio_pitch_follows_it():
    checked_pitch = 0
    for index in range(60):
        row = demo_row(index, seed=1)
        rgb = np.array(COLOURS[row["colour"]][0], dtype=float)
        if row["image"] is not None:
            img = np.asarray(Image.open(io.BytesIO(row["image"])).convert("RGB"), dtype=float)
            assert img.shape == (64, 64, 3)
            near = np.linalg.norm(img - rgb, axis=-1) < 45
            assert near.sum() >= 25, (index, row["label"])
        if row["audio"] is not None:
            wave, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
            assert rate == 16_000 and wave.shape == (16_000,)
            if row["shape"] == "circle":  # a sine: the spectral peak is the fundamental itself
                spectrum = np.abs(np.fft.rfft(wave))
                peak = np.argmax(spectrum) * rate / len(wave)
                assert abs(peak / COLOURS[row["colour"]][1] - 1) < 0.05, (index, peak, row["colour"])
                checked_pitch += 1
    assert checked_pitch >= 3


def test_timbres_differ_between_shapes():
    # Spectral flatness over harmonics separates sine, square, sawtooth and the bell profile.
    def harmonic_profile(shape: str) -> np.ndarray:
        for index in range(400):
            row = demo_row(index, seed=2)
            if row["shape"] == shape and row["colour"] == "red" and row["audio"] is not None:
                wave, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
                spectrum = np.abs(np.fft.rfft(wave))
                f0 = np.argmax(spectrum[150:300]) + 150  # red is ~220 Hz; 1 bin = 1 Hz
                return (
                    np.array([spectrum[k * f0 - 5 : k * f0 + 6].max() for k in range(1, 6)]) / spectrum.max()
                )
        raise AssertionError(f"no red {shape} with audio")

    profiles = {shape: harmonic_profile(shape) for shape in SHAPES}
    assert profiles["circle"][1:].max() < 0.1  # sine: no overtones
    assert profiles["square"][1] < 0.1 < profiles["square"][2]  # odd harmonics only
    assert profiles["triangle"][1] > 0.3  # sawtooth: every harmonic
    assert profiles["star"][1] > profiles["star"][0]  # 2nd harmonic dominates


def test_existing_demo_is_reused_and_other_content_needs_overwrite(tmp_path):
    out = tmp_path / "d.lance"
    first = make_demo_dataset(out, n_rows=20, seed=5)
    assert make_demo_dataset(out, n_rows=20, seed=5).version == first.version
    with pytest.raises(DataError, match="overwrite"):
        make_demo_dataset(out, n_rows=21, seed=5)
    rebuilt = make_demo_dataset(out, n_rows=21, seed=5, overwrite=True)
    assert len(rebuilt) == 21
    with pytest.raises(DataError):
        make_demo_dataset(tmp_path / "none.lance", n_rows=0)


def test_pool_generation_matches_in_process(tmp_path):
    a = make_demo_dataset(tmp_path / "a.lance", n_rows=70, seed=9, workers=1, batch_rows=16)
    b = make_demo_dataset(tmp_path / "b.lance", n_rows=70, seed=9, workers=2, batch_rows=32)
    cols = ["id", "text", "image_sha256", "audio_sha256"]
    assert a.lance.to_table(columns=cols).equals(b.lance.to_table(columns=cols))
