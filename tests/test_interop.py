"""The dataset and its embedding columns read from DuckDB, Polars and pandas, as docs/interop.md shows."""

from __future__ import annotations

import duckdb
import lance
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from lance.blob import blob_array

from mmpt.embed.columns import non_blob_columns, write_embeddings
from mmpt.store.schema import base_schema

N, DIM = 60, 8


@pytest.fixture
def ds(tmp_path):
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": [f"r{i:03d}" for i in range(N)],
            "text": [f"caption {i}" for i in range(N)],
            "image": blob_array([rng.bytes(300) for _ in range(N)]),
            "audio": blob_array([None] * N),
            "image_sha256": [None] * N,
            "audio_sha256": [None] * N,
            "label": [f"class{i % 3}" for i in range(N)],
            "split": [("train", "val")[i % 2] for i in range(N)],
            "source": [None] * N,
        },
        schema=base_schema(),
    )
    uri = str(tmp_path / "interop.lance")
    lance.write_dataset(table, uri, max_rows_per_file=25)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    write_embeddings(uri, "run", "image", [f"r{i:03d}" for i in range(N)], vecs)
    return lance.dataset(uri), vecs


def test_duckdb_reads_embeddings(ds):
    ds, vecs = ds
    with pytest.raises(duckdb.InvalidInputException):  # blob columns must be projected away
        duckdb.sql("SELECT * FROM ds").fetchall()
    rows = duckdb.sql("SELECT * EXCLUDE (image, audio) FROM ds WHERE split = 'val' ORDER BY id").df()
    assert len(rows) == N // 2 and "emb_run_image" in rows.columns
    assert np.allclose(np.stack(rows["emb_run_image"]), vecs[1::2])
    query = ", ".join(str(float(x)) for x in vecs[7])
    top = duckdb.sql(
        f"SELECT id, label, array_cosine_similarity(emb_run_image, [{query}]::FLOAT[{DIM}]) AS score "
        "FROM ds ORDER BY score DESC LIMIT 3"
    ).fetchall()
    assert top[0][0] == "r007" and top[0][2] == pytest.approx(1.0, abs=1e-5)
    counts = duckdb.sql("SELECT label, count(*) FROM ds GROUP BY label ORDER BY label").fetchall()
    assert counts == [("class0", 20), ("class1", 20), ("class2", 20)]


def test_polars_reads_embeddings(ds):
    ds, vecs = ds
    frame = (
        pl.scan_pyarrow_dataset(ds)
        .select(non_blob_columns(ds))
        .filter(pl.col("label") == "class1")
        .collect()
        .sort("id")
    )
    assert frame["id"].to_list() == [f"r{i:03d}" for i in range(1, N, 3)]
    assert np.array_equal(frame["emb_run_image"].to_numpy(), vecs[1::3])
    assert "image" not in frame.columns


def test_pandas_reads_embeddings_and_blobs(ds):
    ds, vecs = ds
    frame = ds.to_table(columns=["id", "label", "split", "emb_run_image"]).to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == N
    assert np.array_equal(np.stack(frame["emb_run_image"].to_numpy()), vecs)
    # blob bytes stay one call away: row positions -> read_blobs
    positions = frame.index[frame["id"] == "r005"].tolist()
    [(_, data)] = ds.read_blobs("image", indices=positions, preserve_order=True)
    assert isinstance(data, bytes) and len(data) == 300
