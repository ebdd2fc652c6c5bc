"""Linear probe: logistic regression on frozen embeddings, fitted on one split and scored on another."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmpt.errors import DataError
from mmpt.eval.metrics import classification_metrics


def _labelled(emb: np.ndarray, labels: Sequence[str | None], what: str) -> tuple[np.ndarray, list[str]]:
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(labels):
        raise ValueError(f"{what} embeddings must be [{len(labels)}, D], got {list(emb.shape)}")
    keep = [i for i, label in enumerate(labels) if label is not None]
    return emb[keep], [label for label in labels if label is not None]


def linear_probe(
    train_emb: np.ndarray,
    train_labels: Sequence[str | None],
    test_emb: np.ndarray,
    test_labels: Sequence[str | None],
    *,
    max_iter: int = 1000,
    class_weight: Literal["balanced"] | None = None,
    seed: int = 0,
    C: float = 1.0,
    label_column: str = "label",
    train_split: str = "train",
) -> dict:
    """Fit standardise + logistic regression on train, report classification metrics on test.

    Rows labelled None are ignored. Test labels never seen in training are counted under
    `unseen_test_labels` and left out of the metrics; a single training class raises DataError.
    """
    x_train, y_train = _labelled(train_emb, train_labels, "train")
    x_test, y_test = _labelled(test_emb, test_labels, "test")
    classes = sorted(set(y_train))
    if not classes:
        raise DataError(
            f"label column {label_column!r} has no labels in split {train_split!r}; a probe needs them"
        )
    if len(classes) == 1:
        raise DataError(
            f"label column {label_column!r} has a single class {classes[0]!r} in split {train_split!r}; "
            "a probe needs at least two"
        )
    seen = set(classes)
    unseen = Counter(label for label in y_test if label not in seen)
    keep = [i for i, label in enumerate(y_test) if label in seen]
    base = {
        "n_train": len(y_train),
        "n_unseen": sum(unseen.values()),
        "unseen_test_labels": dict(sorted(unseen.items())),
        "C": C,
        "class_weight": class_weight,
    }
    if not keep:
        return {
            "accuracy": None,
            "macro_f1": None,
            "n": 0,
            "classes": classes,
            "note": "no test row has a label seen in training",
            **base,
        }
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight, random_state=seed),
    )
    model.fit(x_train, y_train)
    proba = model.predict_proba(x_test[keep])
    fitted = [str(c) for c in model.classes_]  # sorted, same as `classes`
    out = classification_metrics([y_test[i] for i in keep], proba, fitted, top_k=())
    out.update(base)
    return out
