"""Embedding columns: added without rewriting blobs, resumable staged writes, conflicts, reads and exports."""

from __future__ import annotations

import json
import os

import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from lance.blob import blob_array

from mmpt.embed import columns, export
from mmpt.embed.columns import read_embeddings, write_embeddings
from mmpt.embed.export import EmbeddingWriter
from mmpt.errors import DataError
from mmpt.store.schema import base_schema

N, DIM, BLOB = 400, 32, 8_000


def rows(n: int, prefix: str = "r", blob: int = BLOB, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": [f"{prefix}{i:04d}" for i in range(n)],
            "text": [f"caption {i}" for i in range(n)],
            "image": blob_array([rng.bytes(blob) for _ in range(n)]),
            "audio": blob_array([None] * n),
            "image_sha256": [None] * n,
            "audio_sha256": [None] * n,
            "label": [f"class{i % 4}" for i in range(n)],
            "split": [("train", "val", "test")[i % 3] for i in range(n)],
            "source": [None] * n,
        },
        schema=base_schema(),
    )


def size(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def blob_files(ds: lance.LanceDataset) -> set[str]:
    image_id = ds.lance_schema.field("image").id()
    return {d.path for f in ds.get_fragments() for d in f.data_files() if image_id in d.fields}


@pytest.fixture
def uri(tmp_path) -> str:
    path = str(tmp_path / "ds.lance")
    lance.write_dataset(rows(N), path, max_rows_per_file=100)
    return path


def vectors(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def test_column_added_without_rewriting_blobs(uri):
    before, blobs = size(uri), blob_files(lance.dataset(uri))
    image = lance.dataset(uri).read_blobs("image", indices=[5], preserve_order=True)[0][1]
    ids = [f"r{i:04d}" for i in range(0, N, 2)]
    vecs = vectors(len(ids))
    version = write_embeddings(uri, "run1", "image", ids, vecs)
    grown = size(uri) - before
    payload = len(ids) * DIM * 4
    assert payload <= grown < payload + 64_000, grown  # the vectors plus manifests, far from N * BLOB
    ds = lance.dataset(uri)
    assert blob_files(ds) == blobs and ds.version == version
    assert ds.tags.list()["emb-run1"]["version"] == version
    got_ids, got = read_embeddings(uri, "run1", "image")
    assert got_ids == ids and np.array_equal(got, vecs)
    assert ds.to_table(columns=["id"], filter="emb_run1_image IS NULL").num_rows == N - len(ids)

    # extending the column rewrites only that column's files in the fragments holding the new ids
    before = size(uri)
    more = [f"r{i:04d}" for i in range(1, 100, 2)]  # all in the first fragment
    write_embeddings(uri, "run1", "image", more, vectors(len(more), seed=2))
    assert size(uri) - before < 100 * DIM * 4 + 64_000
    assert blob_files(lance.dataset(uri)) == blobs
    got_ids, got = read_embeddings(uri, "run1", "image")
    assert len(got_ids) == len(ids) + len(more)
    assert np.array_equal(got[got_ids.index("r0002")], vecs[1])
    assert lance.dataset(uri).read_blobs("image", indices=[5], preserve_order=True)[0][1] == image


def test_read_formats_and_split(uri):
    ids = [f"r{i:04d}" for i in range(N)]
    vecs = vectors(N)
    write_embeddings(uri, "r2", "text", ids, vecs, tag=False)
    val_ids, val = read_embeddings(uri, "r2", "text", split="val")
    assert val_ids == ids[1::3] and np.array_equal(val, vecs[1::3])
    t_ids, tensor = read_embeddings(uri, "r2", "text", format="torch")
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (N, DIM) and t_ids == ids
    a_ids, arr = read_embeddings(uri, "r2", "text", format="arrow")
    assert a_ids.to_pylist() == ids and arr.type == pa.list_(pa.float32(), DIM)
    assert "emb-r2" not in lance.dataset(uri).tags.list()
    with pytest.raises(DataError, match="no column emb_r2_audio"):
        read_embeddings(uri, "r2", "audio")


def test_bad_input(uri):
    with pytest.raises(DataError, match="run name"):
        write_embeddings(uri, "a/b", "image", ["r0000"], vectors(1))
    with pytest.raises(DataError, match="1 ids but 2 vectors"):
        write_embeddings(uri, "r", "image", ["r0000"], vectors(2))
    with pytest.raises(DataError, match="NaN"):
        write_embeddings(uri, "r", "image", ["r0000"], np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(DataError, match="not in the dataset"):
        write_embeddings(uri, "r", "image", ["nope"], vectors(1))
    write_embeddings(uri, "r", "image", ["r0000"], vectors(1))
    with pytest.raises(DataError, match="dimension 8, expected 32"):
        write_embeddings(uri, "r", "image", ["r0001"], np.ones((1, 8), np.float32))
    with pytest.raises(DataError, match="format"):
        read_embeddings(uri, "r", "image", format="jax")


def test_interrupted_writer_resumes(uri):
    ids, vecs = [f"r{i:04d}" for i in range(N)], vectors(N)
    writer = EmbeddingWriter(uri, "run3", "image", DIM)
    writer.add(ids[:150], vecs[:150])
    writer.add(ids[150:250], vecs[150:250])
    version = lance.dataset(uri).version
    del writer  # "crash": nothing reached the dataset, the chunks are staged

    resumed = EmbeddingWriter(uri, "run3", "image", DIM)
    assert lance.dataset(uri).version == version and "emb_run3_image" not in lance.dataset(uri).schema.names
    done = resumed.done_ids()
    assert done == set(ids[:250]) and resumed.pending() == 250
    todo = [i for i, key in enumerate(ids) if key not in done]
    resumed.add([ids[i] for i in todo], vecs[todo])
    lance.dataset(uri).delete("id = 'r0399'")  # a row deleted after it was staged is skipped at commit
    new_version = resumed.commit()
    assert new_version == version + 2  # the delete, then one commit for the whole column
    got_ids, got = read_embeddings(uri, "run3", "image")
    assert got_ids == ids[:-1] and np.array_equal(got, vecs[:-1])
    assert resumed.pending() == 0 and not os.path.exists(export.staging_uri(uri, "emb_run3_image"))
    assert EmbeddingWriter(uri, "run3", "image", DIM).done_ids() == set(ids[:-1])
    with pytest.raises(DataError, match="not dim 16"):
        EmbeddingWriter(uri, "run3", "image", 16)


def competing_writer(uri: str, times: int):
    """Open the latest version, then let another writer append rows before our commit (`times` times)."""
    real, calls = columns.open_latest, {"n": 0}

    def open_then_race(u, storage_options=None):
        ds = real(u, storage_options)
        if calls["n"] < times:
            lance.write_dataset(rows(2, prefix=f"x{calls['n']}_"), uri, mode="append")
        calls["n"] += 1
        return ds

    return open_then_race


def test_conflicts_retry_then_fail_cleanly(uri, monkeypatch):
    ids, vecs = [f"r{i:04d}" for i in range(10)], vectors(10)
    monkeypatch.setattr(columns, "open_latest", competing_writer(uri, times=1))
    write_embeddings(uri, "ok", "image", ids, vecs)  # first attempt loses the race, the retry wins
    assert read_embeddings(uri, "ok", "image")[0] == ids
    assert lance.dataset(uri).count_rows() == N + 2

    monkeypatch.setattr(columns, "open_latest", competing_writer(uri, times=99))
    with pytest.raises(DataError, match="another writer kept changing"):
        write_embeddings(uri, "busy", "image", ids, vecs, retries=2)
    assert "emb_busy_image" not in lance.dataset(uri).schema.names  # nothing half-written


@pytest.mark.parametrize("fmt", ["parquet", "npy", "lance"])
def test_export(uri, tmp_path, fmt):
    ids, vecs = [f"r{i:04d}" for i in range(0, N, 2)], vectors(N // 2)
    write_embeddings(uri, "ex", "image", ids, vecs)
    write_embeddings(uri, "ex", "text", ids[:10], vecs[:10])
    out = export.export(uri, "ex", ["image", "text"], fmt, tmp_path / f"out.{fmt}", split="train")
    train = [i for i in range(0, N, 2) if i % 3 == 0]
    want_ids = [f"r{i:04d}" for i in train]
    want = vecs[[i // 2 for i in train]]
    if fmt == "npy":
        assert json.loads((out / "ids.json").read_text()) == want_ids
        assert np.array_equal(np.load(out / "image.npy"), want)
        mask = np.load(out / "text_mask.npy")
        assert mask.sum() == len([i for i in train if i < 20]) and not np.load(out / "text.npy")[~mask].any()
        assert pq.read_table(out / "meta.parquet").column_names == ["id", "label", "split"]
    else:
        table = pq.read_table(out) if fmt == "parquet" else lance.dataset(str(out)).to_table()
        assert table["id"].to_pylist() == want_ids and set(table["split"].to_pylist()) == {"train"}
        assert np.array_equal(np.stack(table["emb_ex_image"].to_numpy(zero_copy_only=False)), want)
    assert not (tmp_path / f"out.{fmt}.partial").exists()


def test_failed_export_leaves_nothing(uri, tmp_path, monkeypatch):
    write_embeddings(uri, "ex", "image", ["r0000"], vectors(1))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export.np, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        export.export(uri, "ex", ["image"], "npy", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    with pytest.raises(DataError, match="no column emb_ex_audio"):
        export.export(uri, "ex", ["audio"], "parquet", tmp_path / "x.parquet")
