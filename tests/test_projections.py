"""Projections and clusters: computed once, cached as columns, reused, recomputed when embeddings change."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import lance
import numpy as np
import pyarrow as pa
import pytest
from lance.blob import blob_array

from mmpt.embed.columns import write_embeddings
from mmpt.embed.projections import (
    ProjectionJob,
    cached_projection,
    clusters,
    project,
    projection_column_name,
    start_projection,
)
from mmpt.errors import DataError
from mmpt.store.schema import base_schema

N, EMBEDDED, DIM = 320, 300, 24


def blobs(ds: lance.LanceDataset) -> set[str]:
    image_id = ds.lance_schema.field("image").id()
    return {d.path for f in ds.get_fragments() for d in f.data_files() if image_id in d.fields}


@pytest.fixture
def data(tmp_path):
    """320 rows, the first 300 embedded as 4 well-separated groups (group = row % 4)."""
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": [f"r{i:04d}" for i in range(N)],
            "text": [f"t{i}" for i in range(N)],
            "image": blob_array([rng.bytes(2_000) for _ in range(N)]),
            "audio": blob_array([None] * N),
            "image_sha256": [None] * N,
            "audio_sha256": [None] * N,
            "label": [f"g{i % 4}" for i in range(N)],
            "split": ["train"] * N,
            "source": [None] * N,
        },
        schema=base_schema(),
    )
    uri = str(tmp_path / "p.lance")
    lance.write_dataset(table, uri, max_rows_per_file=100)
    centres = 5 * rng.normal(size=(4, DIM))
    vecs = (centres[np.arange(EMBEDDED) % 4] + rng.normal(size=(EMBEDDED, DIM))).astype(np.float32)
    write_embeddings(uri, "p", "image", [f"r{i:04d}" for i in range(EMBEDDED)], vecs)
    return uri, vecs


def test_pca_cached_and_reused(data):
    uri, vecs = data
    before = blobs(lance.dataset(uri))
    first = project(uri, "p", "image", "pca")
    assert not first.cached and first.column == "proj_p_image_pca" == projection_column_name(
        "p", "image", "pca"
    )
    assert first.values.shape == (EMBEDDED, 2) and first.values.dtype == np.float32
    assert first.ids == [f"r{i:04d}" for i in range(EMBEDDED)]
    ds = lance.dataset(uri)
    assert ds.schema.field("proj_p_image_pca").type == pa.list_(pa.float32(), 2)
    assert ds.to_table(columns=["id"], filter="proj_p_image_pca IS NULL").num_rows == N - EMBEDDED
    assert blobs(ds) == before
    version = ds.version

    again = project(uri, "p", "image", "pca")
    assert (
        again.cached and np.array_equal(again.values, first.values) and lance.dataset(uri).version == version
    )
    assert cached_projection(uri, "p", "image", "pca").cached
    assert cached_projection(uri, "p", "image", "pca", seed=1) is None  # other params: not this cache

    # new embeddings for some rows: the cached projection is stale and is recomputed
    write_embeddings(uri, "p", "image", ["r0000"], vecs[:1] * 3)
    assert cached_projection(uri, "p", "image", "pca") is None
    fresh = project(uri, "p", "image", "pca")
    assert not fresh.cached and not np.array_equal(fresh.values, first.values)
    assert project(uri, "p", "image", "pca").cached


def test_background_tsne_job(data):
    uri, _ = data
    seen = []
    job = start_projection(
        uri, "p", "image", "tsne", on_progress=lambda f, m: seen.append((f, m)), max_iter=250
    )
    result = job.result(timeout=120)
    assert job.done() and job.progress[0] == 1.0 and not result.cached
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][1].endswith("done")
    assert result.values.shape == (EMBEDDED, 2)
    cached = project(uri, "p", "image", "tsne", max_iter=250)
    assert cached.cached and np.array_equal(cached.values, result.values)


def test_background_umap_job_is_cached(data):
    uri, _ = data
    job = ProjectionJob(uri, "p", "image", "umap", n_epochs=30)
    while not job.done():  # a UI would poll like this
        time.sleep(0.2)
    result = job.result()
    assert result.values.shape == (EMBEDDED, 2) and np.isfinite(result.values).all()
    reused = ProjectionJob(uri, "p", "image", "umap", n_epochs=30).result(timeout=60)
    assert reused.cached and np.array_equal(reused.values, result.values)


def test_clusters_label_the_groups(data):
    uri, _ = data
    labels = clusters(uri, "p", "image", k=4)
    assert labels.column == "cluster_p_image_k4" and labels.values.dtype == np.int32
    groups = np.arange(EMBEDDED) % 4
    # each group maps to exactly one cluster and vice versa
    assert len({(g, c) for g, c in zip(groups, labels.values, strict=True)}) == 4
    assert lance.dataset(uri).schema.field("cluster_p_image_k4").type == pa.int32()
    again = clusters(uri, "p", "image", k=4)
    assert again.cached and np.array_equal(again.values, labels.values)


def test_bad_input_and_cancel(data, tmp_path):
    uri, _ = data
    with pytest.raises(DataError, match="unknown projection method"):
        project(uri, "p", "image", "mds")
    with pytest.raises(DataError, match="no column emb_p_audio"):
        project(uri, "p", "audio")
    with pytest.raises(DataError, match="k=1000 clusters"):
        clusters(uri, "p", "image", k=1000)
    gate = threading.Event()
    job = ProjectionJob(uri, "p", "image", "pca", on_progress=lambda f, m: gate.wait(30))
    job.cancel()  # while the job waits at its first progress report
    gate.set()
    with pytest.raises(CancelledError):
        job.result(timeout=60)
    assert "proj_p_image_pca" not in lance.dataset(uri).schema.names
    few = str(tmp_path / "few.lance")
    lance.write_dataset(lance.dataset(uri).to_table(columns=["id", "split"], limit=2), few)
    write_embeddings(few, "p", "image", ["r0000", "r0001"], np.ones((2, 3), np.float32))
    with pytest.raises(DataError, match="at least 3 embedded rows"):
        project(few, "p", "image", "pca")
