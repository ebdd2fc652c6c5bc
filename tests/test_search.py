"""Vector search: planted neighbours found exactly and through a Lance index, filters, bad input."""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest
from lance.blob import blob_array

from mmpt.embed.columns import write_embeddings
from mmpt.embed.search import Hit, ensure_index, search, vector_index
from mmpt.errors import DataError
from mmpt.store.schema import base_schema

DIM = 16
COL = "emb_s_image"


def make(path: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "id": [f"r{i:04d}" for i in range(n)],
            "text": [f"caption {i}" for i in range(n)],
            "image": blob_array([rng.bytes(64) for _ in range(n)]),
            "audio": blob_array([None] * n),
            "image_sha256": [None] * n,
            "audio_sha256": [None] * n,
            "label": [f"class{i % 4}" for i in range(n)],
            "split": [("train", "val", "test")[i % 3] for i in range(n)],
            "source": [None] * n,
        },
        schema=base_schema(),
    )
    lance.write_dataset(table, path, max_rows_per_file=200)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    write_embeddings(path, "s", "image", [f"r{i:04d}" for i in range(n)], vecs, tag=False)
    return vecs


@pytest.fixture
def small(tmp_path):
    uri = str(tmp_path / "small.lance")
    return uri, make(uri, 300)


def planted(vecs: np.ndarray, row: int, seed: int = 5) -> np.ndarray:
    """A query whose nearest row is `row` by a wide margin."""
    return vecs[row] + 0.01 * np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


def test_exact_search_finds_planted_neighbour(small):
    uri, vecs = small
    [hits] = search(uri, COL, planted(vecs, 123), k=5)
    assert isinstance(hits[0], Hit) and hits[0].id == "r0123" and hits[0].score > 0.99
    assert hits[0].text == "caption 123" and hits[0].label == "class3" and hits[0].split == "train"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    q = planted(vecs, 123) / np.linalg.norm(planted(vecs, 123))
    assert [h.id for h in hits] == [f"r{i:04d}" for i in np.argsort(-(unit @ q))[:5]]
    assert hits[0].to_dict()["id"] == "r0123"

    two = search(uri, COL, np.stack([planted(vecs, 7), planted(vecs, 8)]), k=1)
    assert [h[0].id for h in two] == ["r0007", "r0008"]


def test_filters_and_exclusions(small):
    uri, vecs = small
    q = planted(vecs, 123)
    [hits] = search(uri, COL, q, k=10, split="val")
    assert "r0123" not in {h.id for h in hits} and {h.split for h in hits} == {"val"}
    [hits] = search(uri, COL, q, k=10, label="class1", filter="text != 'caption 1'")
    assert {h.label for h in hits} == {"class1"} and "r0001" not in {h.id for h in hits}
    [hits] = search(uri, COL, q, k=3, exclude_ids=["r0123"])
    assert "r0123" not in {h.id for h in hits} and len(hits) == 3


def test_bad_queries(tmp_path, small):
    uri, vecs = small
    with pytest.raises(DataError, match="empty query"):
        search(uri, COL, np.zeros((0, DIM), np.float32))
    with pytest.raises(DataError, match="empty query"):
        search(uri, COL, None)
    with pytest.raises(DataError, match="dimension 3"):
        search(uri, COL, np.ones(3))
    with pytest.raises(DataError, match="all zeros"):
        search(uri, COL, np.zeros(DIM))
    with pytest.raises(DataError, match="no column emb_x_text"):
        search(uri, "emb_x_text", vecs[0])
    sub = str(tmp_path / "thirty.lance")
    make(sub, 90)
    write_embeddings(sub, "t", "image", [f"r{i:04d}" for i in range(30)], vecs[:30])
    with pytest.raises(DataError, match="^k=50 is larger than the 30 rows searched$"):
        search(sub, "emb_t_image", vecs[0], k=50)
    with pytest.raises(DataError, match="k=11 is larger than the 10 rows searched"):
        search(sub, "emb_t_image", vecs[0], k=11, split="train")


def test_index_above_threshold(tmp_path):
    uri = str(tmp_path / "big.lance")
    vecs = make(uri, 1200, seed=1)
    assert ensure_index(uri, COL, threshold=5000) is None and vector_index(lance.dataset(uri), COL) is None
    name = ensure_index(uri, COL, threshold=1000)
    assert vector_index(lance.dataset(uri), COL)["name"] == name
    assert ensure_index(uri, COL, threshold=1000) == name  # already there: reused, not rebuilt
    queries = np.stack([planted(vecs, i, seed=i) for i in (3, 400, 999)])
    indexed = search(uri, COL, queries, k=5, query_params={"nprobes": 16})
    assert [h[0].id for h in indexed] == ["r0003", "r0400", "r0999"]
    assert all(h[0].score > 0.99 for h in indexed)
    exact = search(uri, COL, queries, k=5, exact=True)
    # recall@5 of the approximate index over the 3 queries, counted in whole hits (a mean of fifths rounds
    # 12/15 to 0.7999...): at least 12 of the 15 exact neighbours
    shared = sum(len({h.id for h in a} & {h.id for h in b}) for a, b in zip(indexed, exact, strict=True))
    assert shared >= 12
    [val] = search(uri, COL, queries[1], k=5, split="val", exclude_ids=["r0400"])
    assert {h.split for h in val} == {"val"} and "r0400" not in {h.id for h in val}
    with pytest.raises(DataError, match="k=300 is larger than the 299 rows searched"):
        search(uri, COL, queries[0], k=300, label="class3", exclude_ids=["r0003"])
