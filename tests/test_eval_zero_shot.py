"""Zero-shot classification against class text embeddings, and the shared classification metrics."""

import numpy as np
import pytest

from mmpt.errors import ConfigError, DataError
from mmpt.eval.metrics import classification_metrics, compact_curve
from mmpt.eval.zero_shot import class_text_embeddings, format_prompt, zero_shot


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


CLASSES = ["red circle", "blue square", "green star", "gold moon"]


def near_classes(idx: list[int], noise: float, seed: int = 0, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    class_emb = unit(np.eye(len(CLASSES), dim))
    return unit(class_emb[idx] + noise * rng.normal(size=(len(idx), dim))), class_emb


def test_perfect_embeddings_classify_perfectly():
    idx = [i % 4 for i in range(40)]
    emb, class_emb = near_classes(idx, 0.05)
    out = zero_shot(emb, [CLASSES[i] for i in idx], CLASSES, class_emb)
    assert out["accuracy"] == 1.0 and out["macro_f1"] == 1.0 and out["roc_auc"] == 1.0
    assert out["confusion_matrix"] == (np.eye(4, dtype=int) * 10).tolist()
    assert out["classes"] == CLASSES and out["absent_classes"] == []
    assert all(p["precision"] == 1.0 and p["recall"] == 1.0 for p in out["per_class"].values())
    curve = out["roc_curves"]["red circle"]
    assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0


def test_random_embeddings_are_near_chance():
    rng = np.random.default_rng(5)
    labels = [CLASSES[i % 4] for i in range(400)]
    out = zero_shot(unit(rng.normal(size=(400, 32))), labels, CLASSES, unit(rng.normal(size=(4, 32))))
    assert 0.15 < out["accuracy"] < 0.35
    assert 0.4 < out["roc_auc"] < 0.6


def test_class_absent_from_test_is_reported_and_left_out_of_auc():
    idx = [0, 0, 1, 1, 2, 2]
    emb, class_emb = near_classes(idx, 0.05)
    labels = [CLASSES[i] for i in idx] + [None, "purple hexagon"]
    emb = np.vstack([emb, emb[:2]])
    out = zero_shot(emb, labels, CLASSES, class_emb, top_k=(2, 3))
    assert out["absent_classes"] == ["gold moon"]
    assert set(out["roc_auc_per_class"]) == {"red circle", "blue square", "green star"}
    assert out["per_class"]["gold moon"]["support"] == 0
    assert len(out["confusion_matrix"]) == 4
    assert out["n"] == 6 and out["n_unlabelled"] == 1 and out["unknown_labels"] == {"purple hexagon": 1}
    assert out["top2_accuracy"] == 1.0 and out["top3_accuracy"] == 1.0


def test_hand_checked_predictions():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    out = classification_metrics(["a", "b", "b", "c"], scores, ["a", "b", "c"], top_k=(2,))
    # predictions a, b, a, c: one b mistaken for a
    assert out["accuracy"] == 0.75
    assert out["per_class"]["a"]["precision"] == 0.5 and out["per_class"]["b"]["recall"] == 0.5
    assert out["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert out["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert out["top2_accuracy"] == 1.0
    # class a scores: positives {0.9}, negatives {0.2, 0.6, 0.1} -> AUC 1; b: pos {.7,.3} neg {.1,.2} -> 1
    assert out["roc_auc_per_class"] == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_single_test_class_has_no_auc_and_single_class_name_is_refused():
    emb, class_emb = near_classes([0, 0, 0], 0.05)
    out = zero_shot(emb, [CLASSES[0]] * 3, CLASSES, class_emb)
    assert out["accuracy"] == 1.0 and out["roc_auc"] is None and "same class" in out["roc_auc_note"]
    with pytest.raises(DataError, match="at least two"):
        zero_shot(emb, [CLASSES[0]] * 3, CLASSES[:1], class_emb[:1])
    with pytest.raises(DataError, match="no row"):
        zero_shot(emb, [None] * 3, CLASSES, class_emb)


def test_prompt_templates_are_filled_and_ensembled():
    seen: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    out = class_text_embeddings(["cat", "dog"], encode, ["a photo of a {label}", "{}!"])
    assert seen == [["a photo of a cat", "a photo of a dog"], ["cat!", "dog!"]]
    assert out.shape == (2, 2) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    assert format_prompt("the sound of a {label}", "dog") == "the sound of a dog"
    with pytest.raises(ConfigError, match="placeholder"):
        format_prompt("no slot", "dog")


def test_compact_curve_keeps_ends():
    fpr = np.linspace(0, 1, 1000)
    curve = compact_curve(fpr, fpr**0.5, points=10)
    assert len(curve["fpr"]) == 10 and curve["fpr"][0] == 0.0 and curve["fpr"][-1] == 1.0
