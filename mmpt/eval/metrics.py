"""Classification metrics from class scores, shared by zero-shot and linear-probe evaluation.

Everything is computed with sklearn; this module only decides which classes each figure is taken over
and turns the results into plain JSON-ready Python (floats, lists, dicts keyed by class name).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)

# ROC curves kept in a report: at most this many classes (largest support first), this many points each.
MAX_ROC_CLASSES = 20
ROC_POINTS = 64


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, so that large logit gaps do not collapse scores into ties."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def finite_or_none(x: float) -> float | None:
    """A float for JSON, or None where it is NaN or infinite (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def classification_metrics(
    y_true: Sequence[str],
    scores: np.ndarray,
    classes: Sequence[str],
    *,
    top_k: Sequence[int] = (5,),
    max_roc_classes: int = MAX_ROC_CLASSES,
    roc_points: int = ROC_POINTS,
) -> dict:
    """Accuracy, macro-F1, per-class P/R, confusion matrix and one-vs-rest ROC from scores [N, C].

    The prediction is the argmax of a row (the first class on ties). Every label in `y_true` must be one
    of `classes`. Classes with no test row are listed under `absent_classes`; macro-F1 and ROC AUC are
    taken over the present classes only (AUC is undefined for a class with no positives).
    """
    classes = list(classes)
    scores = np.asarray(scores, dtype=np.float64)
    n, c = len(y_true), len(classes)
    if scores.shape != (n, c):
        raise ValueError(f"scores must be [{n}, {c}], got {list(scores.shape)}")
    if n == 0:
        raise ValueError("no rows to score")
    index = {name: i for i, name in enumerate(classes)}
    y = np.array([index[label] for label in y_true], dtype=np.int64)
    pred = scores.argmax(axis=1)
    all_labels = np.arange(c)
    support = np.bincount(y, minlength=c)
    present = np.flatnonzero(support)

    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=all_labels, zero_division=0)
    out: dict = {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
    }
    for k in top_k:
        if 1 < k < c:
            out[f"top{k}_accuracy"] = float(top_k_accuracy_score(y, scores, k=k, labels=all_labels))
    out.update(_roc(y, scores, classes, present, support, max_roc_classes, roc_points))
    out.update(
        {
            "n": n,
            "classes": classes,
            "absent_classes": [classes[i] for i in range(c) if support[i] == 0],
            "per_class": {
                classes[i]: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(support[i]),
                }
                for i in range(c)
            },
            # rows: true class, columns: predicted class, both in the order of "classes"
            "confusion_matrix": confusion_matrix(y, pred, labels=all_labels).tolist(),
        }
    )
    return out


def _roc(
    y: np.ndarray,
    scores: np.ndarray,
    classes: list[str],
    present: np.ndarray,
    support: np.ndarray,
    max_classes: int,
    points: int,
) -> dict:
    """Per-class one-vs-rest ROC AUC (macro = their mean) and compact curves for the largest classes."""
    if len(present) < 2:
        only = classes[present[0]] if len(present) else None
        return {
            "roc_auc": None,
            "roc_auc_note": f"undefined: every test row has the same class {only!r}",
            "roc_auc_per_class": {},
            "roc_curves": {},
        }
    per_class: dict[str, float] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    plotted = set(sorted(present, key=lambda i: (-support[i], i))[:max_classes])
    for i in present:
        positive = y == i
        per_class[classes[i]] = float(roc_auc_score(positive, scores[:, i]))
        if i in plotted:
            fpr, tpr, _ = roc_curve(positive, scores[:, i])
            curves[classes[i]] = compact_curve(fpr, tpr, points)
    return {
        "roc_auc": float(np.mean(list(per_class.values()))),
        "roc_auc_per_class": per_class,
        "roc_curves": curves,
    }


def compact_curve(fpr: np.ndarray, tpr: np.ndarray, points: int = ROC_POINTS) -> dict[str, list[float]]:
    """A ROC curve thinned to about `points` evenly spaced vertices (ends kept), rounded to 4 places."""
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    if len(fpr) > points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, points).round().astype(np.int64))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": np.round(fpr, 4).tolist(), "tpr": np.round(tpr, 4).tolist()}
