"""Retrieval recall@k by row id and label-match P@1 on small synthetic embeddings."""

import numpy as np
import pytest

from mmpt.errors import DataError
from mmpt.eval.retrieval import label_match, retrieval, retrieval_ranks


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_perfect_embeddings_rank_first_whatever_the_order():
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(50, 32)))
    ids = [f"r{i}" for i in range(50)]
    order = rng.permutation(50)
    out = retrieval(emb, ids, emb[order], [ids[i] for i in order])
    assert out["r@1"] == 1.0 and out["r@5"] == 1.0 and out["r@10"] == 1.0
    assert out["median_rank"] == 1.0 and out["n_queries"] == 50


def test_random_embeddings_are_near_chance():
    rng = np.random.default_rng(1)
    n = 400
    ids = [str(i) for i in range(n)]
    out = retrieval(unit(rng.normal(size=(n, 64))), ids, unit(rng.normal(size=(n, 64))), ids)
    assert out["r@1"] < 0.02
    assert out["r@10"] < 0.06
    assert 120 < out["median_rank"] < 280


def test_hand_checked_three_by_three_with_a_tie_counted_against():
    targets = unit([[1, 0], [0, 1], [-1, 0]])
    queries = unit([[1, 0], [0.8, 0.6], [0, 1], [0.5, 0.5]])
    # q_a: a=1 best -> rank 1; q_b: a=.8 > b=.6 -> rank 2; q_c: a=0, b=1, c=0 -> tie with a, pessimistic -> 3
    ranks = retrieval_ranks(queries, ["a", "b", "c", "zz"], targets, ["a", "b", "c"])
    assert ranks.tolist() == [1, 2, 3]
    out = retrieval(queries, ["a", "b", "c", "zz"], targets, ["a", "b", "c"], ks=(1, 2, 5))
    assert out["r@1"] == pytest.approx(1 / 3)
    assert out["r@2"] == pytest.approx(2 / 3)
    assert out["r@5"] == 1.0
    assert out["median_rank"] == 2.0 and out["mean_rank"] == 2.0
    assert out["n_queries"] == 3  # "zz" has no target and is left out


def test_chunking_does_not_change_ranks():
    rng = np.random.default_rng(2)
    q, t = unit(rng.normal(size=(37, 8))), unit(rng.normal(size=(41, 8)))
    q_ids, t_ids = [str(i) for i in range(37)], [str(i) for i in range(41)][::-1]
    assert np.array_equal(
        retrieval_ranks(q, q_ids, t, t_ids, chunk=5), retrieval_ranks(q, q_ids, t, t_ids, chunk=1000)
    )


def test_constant_embeddings_are_not_perfect():
    emb = np.ones((10, 4), dtype=np.float32) / 2
    ids = [str(i) for i in range(10)]
    assert retrieval(emb, ids, emb, ids)["r@1"] == 0.0


def test_bad_ids_are_reported():
    emb = unit(np.eye(3))
    with pytest.raises(DataError, match="not unique"):
        retrieval(emb, ["a", "b", "c"], emb, ["a", "a", "c"])
    with pytest.raises(DataError, match="no query id"):
        retrieval(emb, ["a", "b", "c"], emb, ["x", "y", "z"])


def test_label_match_top_hit_shares_the_label():
    rng = np.random.default_rng(3)
    centres = unit(rng.normal(size=(3, 16))) * 5
    labels = [["cat", "dog", "owl"][i % 3] for i in range(30)]
    q = unit(centres[[i % 3 for i in range(30)]] + rng.normal(size=(30, 16)))
    t = unit(centres[[i % 3 for i in range(30)]] + rng.normal(size=(30, 16)))
    out = label_match(q, labels, t, labels)
    assert out == {"p@1": 1.0, "n_queries": 30, "n_targets": 30}
    shuffled = list(rng.permutation(labels))
    assert label_match(q, labels, t, shuffled)["p@1"] < 0.8


def test_label_match_excludes_the_row_itself_within_a_modality():
    emb = unit([[1, 0], [0.99, 0.14], [0, 1], [0.5, 0.5]])
    labels = ["A", "B", "A", None]
    ids = ["x0", "x1", "x2", "x3"]
    # with itself in the pool every row finds itself; without, x0 -> x1 (B), x1 -> x0 (A), x2 -> x1 (B)
    assert label_match(emb, labels, emb, labels)["p@1"] == 1.0
    out = label_match(emb, labels, emb, labels, ids, ids, exclude_same_id=True)
    assert out["p@1"] == 0.0 and out["n_queries"] == 3 and out["n_targets"] == 3


def test_label_match_needs_labels():
    emb = unit(np.eye(2))
    with pytest.raises(DataError):
        label_match(emb, [None, None], emb, ["a", "b"])
    with pytest.raises(ValueError):
        label_match(emb, ["a", "b"], emb, ["a", "b"], exclude_same_id=True)
