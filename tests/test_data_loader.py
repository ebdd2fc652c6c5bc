"""build_loader on real Lance datasets: batch contents and masks, splits, ranks, epochs, resume, workers."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from types import SimpleNamespace

import lance
import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
import torch
from lance.blob import blob_array
from PIL import Image

from mmpt.data.loader import build_loader
from mmpt.errors import DataError
from mmpt.models.spec import InputSpec
from mmpt.store.schema import base_schema

SPEC = InputSpec(
    image_size=16,
    image_mean=(0.5, 0.5, 0.5),
    image_std=(0.25, 0.25, 0.25),
    sample_rate=8000,
    clip_samples=2000,
    context_length=16,
)
ALL = ("image", "text", "audio")


def _colour(i: int) -> tuple[int, int, int]:
    return (37 * i) % 256, (91 * i) % 256, (53 * i) % 256


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), _colour(i)).save(buf, format="PNG")
    return buf.getvalue()


def _wav(i: int) -> bytes:
    """Noise clips: 11.025 kHz stereo 0.4 s (i%4==0), 8 kHz mono 0.1 s (i%4==1, padded), else 8 kHz 0.5 s."""
    rng = np.random.default_rng(i)
    rate, frames, channels = (11025, 4410, 2) if i % 4 == 0 else (8000, 800 if i % 4 == 1 else 4000, 1)
    buf = io.BytesIO()
    sf.write(buf, (0.5 * rng.standard_normal((frames, channels))).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def _row(i: int) -> dict:
    image = None if i % 5 == 1 else _png(i)
    audio = None if i % 7 == 2 else _wav(i)
    return {
        "id": f"r{i:03d}",
        "text": None if i % 6 == 3 else f"a photo of row {i}",
        "image": image,
        "audio": audio,
        "image_sha256": hashlib.sha256(image).hexdigest() if image else None,
        "audio_sha256": hashlib.sha256(audio).hexdigest() if audio else None,
        "label": None if i % 8 == 7 else f"class{i % 3}",
        "split": "train" if i % 3 else ("val" if i % 2 == 0 else "test"),
        "source": None,
    }


def _table(rows: list[dict]) -> pa.Table:
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    cols["image"], cols["audio"] = blob_array(cols["image"]), blob_array(cols["audio"])
    return pa.table(cols, schema=base_schema())


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> lance.LanceDataset:
    """48 rows in 4 fragments with deletions and an append, so row positions differ from row ids."""
    uri = str(tmp_path_factory.mktemp("data") / "corpus.lance")
    lance.write_dataset(_table([_row(i) for i in range(36)]), uri, max_rows_per_file=12)
    lance.dataset(uri).delete("id IN ('r004', 'r013', 'r014')")
    lance.write_dataset(_table([_row(i) for i in range(36, 51)]), uri, mode="append")
    return lance.dataset(uri)


def _rows_by_id(ds: lance.LanceDataset) -> dict[str, dict]:
    return {f"r{i:03d}": _row(i) for i in range(51) if i not in (4, 13, 14)}


def _batches(loader) -> list[dict]:
    return list(loader)


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


def test_read_blobs_indices_are_row_positions_after_delete_and_append(ds: lance.LanceDataset) -> None:
    positions = [40, 0, 17, 3, 17]
    ids = ds.take(positions, columns=["id"]).column("id").to_pylist()
    expected = _rows_by_id(ds)
    blobs = ds.read_blobs("image", indices=positions, preserve_order=True)
    assert [b for _, b in blobs] == [expected[i]["image"] for i in ids]
    assert ds.count_rows() == 48 and len(ds.get_fragments()) == 4


def test_eval_batch_contents_shapes_and_masks(ds: lance.LanceDataset) -> None:
    loader = build_loader(ds, SPEC, ALL, "val", 4, train=False)
    expected = _rows_by_id(ds)
    val_ids = [r for r in ds.to_table(columns=["id", "split"]).to_pylist() if r["split"] == "val"]
    assert loader.num_rows == len(val_ids) == 9 and len(loader) == 3
    batches = _batches(loader)
    assert [i for b in batches for i in b["ids"]] == [r["id"] for r in val_ids]  # in order at eval
    mean, std = torch.tensor(SPEC.image_mean), torch.tensor(SPEC.image_std)
    for batch in batches:
        b = len(batch["ids"])
        assert batch["image"].shape == (b, 3, 16, 16) and batch["image"].dtype == torch.float32
        assert batch["text"].shape == (b, 16) and batch["text"].dtype == torch.long
        assert batch["audio"].shape == (b, 2000) and batch["audio"].dtype == torch.float32
        assert batch["index"].dtype == torch.long and not batch["padded"].any()
        taken = ds.take(batch["index"].tolist(), columns=["id"]).column("id").to_pylist()
        assert taken == batch["ids"]
        for k, row_id in enumerate(batch["ids"]):
            row = expected[row_id]
            assert batch["labels"][k] == row["label"]
            for modality, tensor in (
                ("image", batch["image"]),
                ("text", batch["text"]),
                ("audio", batch["audio"]),
            ):
                present = row[modality] is not None
                assert bool(batch[f"{modality}_mask"][k]) == present, (row_id, modality)
                if not present:
                    assert not tensor[k].any()
            if row["image"] is not None:  # the pixels belong to this row (solid colour survives resize)
                pixels = batch["image"][k] * std[:, None, None] + mean[:, None, None]
                colour = torch.tensor(_colour(int(row_id[1:])), dtype=torch.float32) / 255
                assert torch.allclose(pixels, colour[:, None, None].expand_as(pixels), atol=1e-5)
            if row["audio"] is not None:
                assert batch["audio"][k].abs().sum() > 0
    masks = torch.cat([b["audio_mask"] for b in batches])
    assert not masks.all() and masks.any()


def test_split_filter_and_modality_subset(ds: lance.LanceDataset) -> None:
    loader = build_loader(ds.uri, SPEC, ("text",), "train", 5, train=False)
    batches = _batches(loader)
    assert all(set(b) == {"ids", "labels", "index", "padded", "text", "text_mask"} for b in batches)
    ids = [i for b in batches for i in b["ids"]]
    assert sorted(ids) == sorted(k for k, r in _rows_by_id(ds).items() if r["split"] == "train")
    assert len(batches[-1]["ids"]) == len(ids) % 5 or len(ids) % 5 == 0  # eval keeps the partial batch
    everything = build_loader(ds, SPEC, ("text",), None, 64, train=False)
    assert everything.num_rows == 48 and len(everything) == 1
    chosen = build_loader(ds, SPEC, ("text",), "ignored", 2, train=False, rows=np.array([47, 0, 5]))
    assert [b["index"].tolist() for b in chosen] == [[47, 0], [5]]
    with pytest.raises(DataError, match=r"row positions must lie in \[0, 48\)"):
        build_loader(ds, SPEC, ("text",), None, 2, train=False, rows=[3, 48])


def test_ranks_get_equal_batches_and_slices_of_the_global_batch(ds: lance.LanceDataset) -> None:
    kw = dict(train=True, seed=11, image_augment=True)
    single = build_loader(ds, SPEC, ALL, "train", 12, **kw)
    ranks = [build_loader(ds, SPEC, ALL, "train", 4, rank=r, world_size=3, **kw) for r in range(3)]
    assert len(single) == 2 and [len(r) for r in ranks] == [2, 2, 2]  # 31 train rows, 2 full global batches
    one, per_rank = _batches(single), [_batches(r) for r in ranks]
    for b, whole in enumerate(one):
        for key in ("image", "audio", "text", "image_mask", "audio_mask", "index"):
            joined = torch.cat([per_rank[r][b][key] for r in range(3)])
            assert torch.equal(joined, whole[key]), key  # same rows, bit-identical augmentation
    # eval across 3 ranks: equal counts, every row exactly once once padding is dropped
    evals = [
        _batches(build_loader(ds, SPEC, ("text",), "val", 2, train=False, rank=r, world_size=3))
        for r in range(3)
    ]
    assert len({len(e) for e in evals}) == 1
    ids = [i for e in evals for b in e for i, p in zip(b["ids"], b["padded"].tolist(), strict=True) if not p]
    assert sorted(ids) == sorted(k for k, r in _rows_by_id(ds).items() if r["split"] == "val")


def test_epochs_reseed_reproducibly_and_resume_mid_epoch(ds: lance.LanceDataset) -> None:
    kw = dict(train=True, seed=5, image_augment=True)
    loader = build_loader(ds, SPEC, ALL, "train", 4, **kw)
    epoch0 = _batches(loader)
    loader.set_epoch(1)
    epoch1 = _batches(loader)
    assert [b["ids"] for b in epoch0] != [b["ids"] for b in epoch1]
    for epoch in (epoch0, epoch1):  # 31 rows, batch 4: 7 full batches of distinct rows, 3 rows dropped
        assert len({i for b in epoch for i in b["ids"]}) == 28 and len(epoch) == len(loader) == 7
    again = build_loader(ds, SPEC, ALL, "train", 4, **kw)
    again.set_epoch(1)
    _assert_same(_batches(again), epoch1)
    other_seed = build_loader(ds, SPEC, ALL, "train", 4, train=True, seed=6)
    other_seed.set_epoch(1)
    assert [b["ids"] for b in _batches(other_seed)] != [b["ids"] for b in epoch1]
    resumed = build_loader(ds, SPEC, ALL, "train", 4, **kw)
    resumed.set_epoch(1)
    resumed.set_start_batch(5)
    _assert_same(_batches(resumed), epoch1[5:])
    _assert_same(_batches(resumed), epoch1)  # the skip applies to one pass only
    with pytest.raises(DataError, match="start batch"):
        resumed.set_start_batch(len(resumed) + 1)


def test_two_workers_give_bit_identical_batches(ds: lance.LanceDataset) -> None:
    kw = dict(
        train=True,
        seed=3,
        image_augment={
            "scale": (0.3, 1.0),
            "color_jitter": (0.4, 0.4, 0.4, 0.1),
            "color_jitter_prob": 0.8,
            "gray_scale_prob": 0.2,
        },
    )
    reference = build_loader(ds, SPEC, ALL, "train", 4, **kw)
    expected = [_batches(reference)]
    reference.set_epoch(1)
    expected.append(_batches(reference))
    with build_loader(ds, SPEC, ALL, "train", 4, num_workers=2, **kw) as workers:
        _assert_same(_batches(workers), expected[0])
        workers.set_epoch(1)
        workers.set_start_batch(3)
        _assert_same(_batches(workers), expected[1][3:])  # persistent workers, resumed mid-epoch


def test_pinned_version_ignores_later_writes(ds: lance.LanceDataset, tmp_path: Path) -> None:
    uri = str(tmp_path / "pinned.lance")
    lance.write_dataset(_table([_row(i) for i in range(6)]), uri)
    pinned = lance.dataset(uri)
    loader = build_loader(pinned, SPEC, ("text",), None, 100, train=False)
    lance.write_dataset(_table([_row(i) for i in range(6, 12)]), uri, mode="append")
    assert [len(b["ids"]) for b in loader] == [6]
    loader.reader._ds = None  # as in a fresh worker: reopened by (uri, version)
    assert [len(b["ids"]) for b in loader] == [6]
    handle = SimpleNamespace(lance=pinned, storage_options=None)  # an mmpt.store MmptDataset, duck-typed
    assert build_loader(handle, SPEC, ("text",), None, 4, train=False).num_rows == 6


def test_corrupt_blob_is_marked_missing_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [_row(i) for i in (0, 2, 4, 5)]
    rows[1]["image"] = b"\x89PNG but truncated"  # undecodable
    rows[2]["image"] = _png(99)  # decodes, but its sha256 no longer matches
    uri = str(tmp_path / "corrupt.lance")
    lance.write_dataset(_table(rows), uri)
    loose = build_loader(uri, SPEC, ("image", "text"), None, 4, train=False)
    with caplog.at_level(logging.WARNING, logger="mmpt.data.loader"):
        (batch,) = _batches(loose)
        _batches(loose)
    assert batch["image_mask"].tolist() == [True, False, True, True] and batch["text_mask"].all()
    assert loose.decode_failures["image"] == 2
    assert sum("r002" in r.message for r in caplog.records) == 1  # warned once
    strict = build_loader(uri, SPEC, ("image",), None, 4, train=False, verify_sha256=True)
    (batch,) = _batches(strict)
    assert batch["image_mask"].tolist() == [True, False, False, True]
    assert strict.decode_failures["image"] == 2


def test_bad_input_errors(ds: lance.LanceDataset, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"batch size 64 is larger than the 31 rows of split 'train'"):
        build_loader(ds, SPEC, ALL, "train", 64, train=True)
    with pytest.raises(
        DataError, match=r"split 'dev' has no rows; the dataset's splits are: test, train, val"
    ):
        build_loader(ds, SPEC, ALL, "dev", 4, train=False)
    with pytest.raises(DataError, match="unknown modality 'video'"):
        build_loader(ds, SPEC, ("video",), "train", 4, train=False)
    uri = str(tmp_path / "no_audio.lance")
    rows = [{**_row(i), "audio": None, "audio_sha256": None} for i in range(4)]
    lance.write_dataset(_table(rows), uri)
    with pytest.raises(DataError, match="no audio values"):
        build_loader(uri, SPEC, ("image", "audio"), None, 2, train=False)
    with pytest.raises(DataError, match="cannot open"):
        build_loader(str(tmp_path / "missing.lance"), SPEC, ("text",), None, 2, train=False)
