"""Training-ready copies at ingest (`--image-max-side`, `--audio-rate`) on real Lance datasets, and the reader
choosing them over the originals."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from PIL import Image

from mmpt.cli import main as cli
from mmpt.data.audio import decode_audio
from mmpt.data.loader import build_loader
from mmpt.errors import DataError
from mmpt.models.spec import InputSpec
from mmpt.store.ingest import ingest
from mmpt.store.integrity import check_latest
from mmpt.store.ready import ReadyOptions, add_ready
from mmpt.store.schema import READY_COLUMNS, sha_column
from mmpt.store.write import sha256_hex

SPEC = InputSpec(image_size=32, sample_rate=8000, clip_samples=8000)


def _image(w: int, h: int, seed: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    pixels = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], axis=-1) + rng.integers(
        0, 20, (h, w, 3)
    )
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _clip(rate: int, channels: int, seed: int) -> bytes:
    t = np.arange(rate) / rate
    rng = np.random.default_rng(seed)
    wave = 0.4 * np.sin(2 * np.pi * (300 + 50 * seed) * t)[:, None] + rng.normal(0, 0.02, (rate, channels))
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _frame() -> pd.DataFrame:
    rows = [
        {
            "id": "big",
            "text": "a big photo",
            "image": _image(160, 120, 0, "JPEG"),
            "audio": _clip(24_000, 2, 0),
        },
        {"id": "small", "text": "a small one", "image": _image(40, 30, 1), "audio": _clip(8000, 1, 1)},
        {"id": "text", "text": "only words", "image": None, "audio": None},
    ]
    return pd.DataFrame([{**r, "split": "train"} for r in rows])


def test_ready_copies_sit_beside_the_originals_and_the_reader_uses_them(tmp_path) -> None:
    df = _frame()
    result = ingest(df, tmp_path / "r.lance", quiet=True, workers=1, image_max_side=64, audio_rate=8000)
    ds = result.dataset.lance
    assert set(READY_COLUMNS) <= set(ds.schema.names)
    table = ds.to_table(
        columns=["id", "image_sha256", "image_ready_sha256", "audio_ready_sha256"]
    ).to_pylist()
    by_id = {r["id"]: r for r in table}
    assert by_id["big"]["image_sha256"] == sha256_hex(df["image"][0])  # the original is kept untouched
    assert by_id["big"]["image_ready_sha256"] and by_id["big"]["audio_ready_sha256"]
    assert by_id["small"]["image_ready_sha256"] is None  # already small enough, mono at 8 kHz: no copy
    assert by_id["small"]["audio_ready_sha256"] is None
    ready_image = next(b for _, b in ds.read_blobs("image_ready", indices=[0]))
    with Image.open(io.BytesIO(ready_image)) as img:
        assert img.format == "JPEG" and img.size == (64, 48)
    ready_audio = next(b for _, b in ds.read_blobs("audio_ready", indices=[0]))
    samples, rate = sf.read(io.BytesIO(ready_audio), dtype="float32", always_2d=True)
    assert rate == 8000 and samples.shape == (8000, 1)
    # the copy holds what the reader would compute from the original, to 16-bit precision
    expected = decode_audio(df["audio"][0], 8000).numpy()
    assert np.abs(samples[:, 0] - expected).max() <= 2**-15 + 1e-7
    assert check_latest(str(tmp_path / "r.lance")).ok  # originals still match their hashes

    with build_loader(
        ds, SPEC, ("image", "audio", "text"), "train", 3, train=False, verify_sha256=True
    ) as loader:
        batch = next(iter(loader))
    assert loader.decode_failures == {}
    assert batch["image_mask"].tolist() == [True, True, False] and batch["audio_mask"].tolist() == [
        True,
        True,
        False,
    ]
    # row 0 comes from its copies, row 1 from its originals (no copy): compare with originals decoded directly
    with build_loader(ds, SPEC, ("audio",), "train", 3, train=False) as plain:
        assert torch.equal(next(iter(plain))["audio"][1], batch["audio"][1])
    assert torch.allclose(batch["audio"][0], decode_audio(df["audio"][0], 8000)[:8000], atol=2**-14)


def test_verify_hashes_the_training_ready_copies_too(tmp_path) -> None:
    uri = str(tmp_path / "r.lance")
    ds = ingest(_frame(), uri, quiet=True, workers=1, image_max_side=64, audio_rate=8000).dataset.lance
    assert check_latest(uri).ok
    ds.update({"audio_ready_sha256": "'0000'"}, where="id = 'big'")  # a copy no longer matching its digest
    check = check_latest(uri)
    assert [(row, column) for row, column, _ in check.mismatched] == [("big", "audio_ready")]


def test_drop_originals_stores_the_copy_in_place_and_appends_follow_the_schema(tmp_path) -> None:
    df = _frame()
    out = tmp_path / "d.lance"
    ds = ingest(
        df, out, quiet=True, workers=1, image_max_side=64, audio_rate=8000, drop_originals=True
    ).dataset.lance
    assert not set(READY_COLUMNS) & set(ds.schema.names)
    image = next(b for _, b in ds.read_blobs("image", indices=[0]))
    assert Image.open(io.BytesIO(image)).size == (64, 48)
    assert ds.take([0], columns=[sha_column("image")]).column(0)[0].as_py() == sha256_hex(image)
    assert check_latest(str(out)).ok
    extra = df.assign(id=df["id"] + "-2")
    with pytest.raises(DataError, match="without training-ready copies"):
        ingest(extra, out, append=True, quiet=True, workers=1, image_max_side=64)
    ingest(extra, out, append=True, quiet=True, workers=1, image_max_side=64, drop_originals=True)

    kept = tmp_path / "k.lance"
    ingest(df, kept, quiet=True, workers=1, image_max_side=64)
    appended = ingest(extra, kept, append=True, quiet=True, workers=1).dataset.lance  # rows without copies
    assert appended.count_rows() == 6
    assert appended.to_table(columns=["image_ready_sha256"]).column(0).null_count == 5


def test_ready_options_are_checked_and_reach_the_cli(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    df = _frame()
    with pytest.raises(DataError, match="--drop-originals needs"):
        ingest(df, tmp_path / "x.lance", quiet=True, drop_originals=True)
    with pytest.raises(DataError, match="--audio-rate"):
        ingest(df, tmp_path / "x.lance", quiet=True, audio_rate=10)
    manifest = tmp_path / "m.parquet"
    df.to_parquet(manifest)
    out = tmp_path / "cli.lance"
    cli(
        [
            "ingest",
            str(manifest),
            "--out",
            str(out),
            "--image-max-side",
            "64",
            "--audio-rate",
            "8000",
            "-q",
            "--json",
        ]
    )
    assert json.loads(capsys.readouterr().out)["written"] == 3
    with pytest.raises(SystemExit) as exit_info:
        cli(["ingest", str(manifest), "--out", str(tmp_path / "y.lance"), "--drop-originals"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "error: --drop-originals needs --image-max-side or --audio-rate (a copy to keep instead)"
    )


def test_a_copy_that_cannot_be_made_rejects_its_row() -> None:
    row = {"id": "x", "source": "x.jpg", "image": b"\xff\xd8\xff not an image", "audio": None}
    rejected = add_ready(row, ReadyOptions(image_max_side=64), row_number=7)
    assert rejected["rejected"] == "ready_failed" and rejected["row"] == 7 and rejected["modality"] == "image"
    assert rejected["reason"].startswith("training-ready image copy failed: UnidentifiedImageError")


def test_a_source_column_named_like_a_copy_becomes_metadata(tmp_path) -> None:
    df = _frame().assign(image_ready="yes", audio_ready_sha256="x")
    ds = ingest(df, tmp_path / "m.lance", quiet=True, workers=1).dataset.lance
    names = set(ds.schema.names)
    assert {"meta_image_ready", "meta_audio_ready_sha256"} <= names and not names & set(READY_COLUMNS)
