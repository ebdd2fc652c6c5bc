"""Linear probe on frozen embeddings: fit on train, score on test, bad labels reported."""

import numpy as np
import pytest

from mmpt.errors import DataError
from mmpt.eval.probe import linear_probe


def clusters(n_per: int, labels: list[str], seed: int, dim: int = 16) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(len(labels), dim)) * 4
    idx = [i % len(labels) for i in range(n_per * len(labels))]
    emb = centres[idx] + rng.normal(size=(len(idx), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), [labels[i] for i in idx]


def test_separable_clusters_probe_near_perfectly():
    x_train, y_train = clusters(20, ["a", "b", "c"], seed=0)
    x_test, y_test = clusters(10, ["a", "b", "c"], seed=1)
    out = linear_probe(np.vstack([x_train, x_test[:1]]), y_train + [None], x_test, y_test)
    assert out["accuracy"] >= 0.97 and out["macro_f1"] >= 0.97 and out["roc_auc"] >= 0.99
    assert out["classes"] == ["a", "b", "c"] and out["n"] == 30 and out["n_train"] == 60
    assert out["unseen_test_labels"] == {} and len(out["confusion_matrix"]) == 3


def test_two_classes_and_balanced_weights():
    x_train, y_train = clusters(15, ["yes", "no"], seed=2)
    x_test, y_test = clusters(5, ["yes", "no"], seed=3)
    out = linear_probe(x_train, y_train, x_test, y_test, class_weight="balanced")
    assert out["accuracy"] == 1.0 and out["roc_auc"] == 1.0 and out["class_weight"] == "balanced"


def test_single_training_class_is_a_data_error():
    x, _ = clusters(5, ["a", "b"], seed=4)
    with pytest.raises(DataError) as err:
        linear_probe(x, ["x"] * 10, x, ["x"] * 10)
    assert str(err.value) == (
        "label column 'label' has a single class 'x' in split 'train'; a probe needs at least two"
    )
    with pytest.raises(DataError, match="no labels"):
        linear_probe(x, [None] * 10, x, ["x"] * 10)


def test_unseen_test_labels_are_reported_and_left_out():
    x_train, y_train = clusters(10, ["a", "b"], seed=5)
    x_test, y_test = clusters(5, ["a", "b", "z"], seed=6)
    out = linear_probe(x_train, y_train, x_test, y_test)
    assert out["unseen_test_labels"] == {"z": 5} and out["n_unseen"] == 5
    assert out["n"] == 10 and out["classes"] == ["a", "b"]
    assert out["accuracy"] is not None
    only_unseen = linear_probe(x_train, y_train, x_test[:3], ["q", "q", "r"])
    assert only_unseen["accuracy"] is None and only_unseen["unseen_test_labels"] == {"q": 2, "r": 1}
