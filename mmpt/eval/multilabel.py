"""Multi-label zero-shot (AudioSet-style `labels` rows): mean average precision of class-prompt similarities.

Each row is scored against every class prompt by cosine similarity; the figure is sklearn's macro average
precision over the classes with at least one positive row (AP is undefined for a class no row has), the mAP
AudioSet papers report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score

from mmpt.errors import DataError


def multilabel_zero_shot(
    emb: np.ndarray,
    label_sets: Sequence[Sequence[str] | None],
    class_names: Sequence[str],
    class_text_emb: np.ndarray,
) -> dict:
    """mAP (macro over the classes present), the rows and classes it is taken over, and each class's AP."""
    emb = np.asarray(emb, dtype=np.float32)
    class_names = list(class_names)
    if emb.ndim != 2 or emb.shape[0] != len(label_sets):
        raise ValueError(f"emb must be [{len(label_sets)}, D], got {list(emb.shape)}")
    if np.asarray(class_text_emb).shape != (len(class_names), emb.shape[1]):
        raise ValueError(f"class_text_emb must be [{len(class_names)}, {emb.shape[1]}]")
    index = {name: i for i, name in enumerate(class_names)}
    rows = [i for i, labels in enumerate(label_sets) if labels]
    if not rows:
        raise DataError("multi-label zero-shot: no row has labels")
    truth = np.zeros((len(rows), len(class_names)), dtype=bool)
    for r, i in enumerate(rows):
        for label in label_sets[i] or ():
            if label in index:
                truth[r, index[label]] = True
    present = np.flatnonzero(truth.any(axis=0))
    if len(present) < 2:
        raise DataError("multi-label zero-shot needs at least two classes with a labelled row")
    scores = emb[rows] @ np.asarray(class_text_emb, dtype=np.float32).T
    per_class = average_precision_score(truth[:, present], scores[:, present], average=None)
    return {
        "mAP": float(np.mean(per_class)),
        "n_multilabel_rows": len(rows),
        "n_multilabel_classes": len(present),
        "ap_per_class": {class_names[c]: float(ap) for c, ap in zip(present, per_class, strict=True)},
    }
