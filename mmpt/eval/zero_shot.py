"""Zero-shot classification: each image or audio embedding is labelled with its nearest class prompt."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from mmpt.errors import ConfigError, DataError
from mmpt.eval.metrics import classification_metrics, softmax

DEFAULT_PROMPT = "{label}"
# CLIP's learnt temperature saturates at 100; scores are softmax(100 * cosine), as at inference.
LOGIT_SCALE = 100.0


def format_prompt(template: str, label: str) -> str:
    """Fill a prompt template's `{label}` (or `{}`) with a class name; other braces are left alone."""
    if "{label}" in template:
        return template.replace("{label}", label)
    if "{}" in template:
        return template.replace("{}", label)
    raise ConfigError(f"prompt {template!r} has no '{{label}}' placeholder for the class name")


def class_text_embeddings(
    class_names: Sequence[str],
    encode_texts: Callable[[list[str]], np.ndarray],
    templates: str | Sequence[str] = DEFAULT_PROMPT,
) -> np.ndarray:
    """Class embeddings [C, D] from prompt texts: the mean over templates (prompt ensemble), L2-normalised."""
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise ConfigError("no prompt template given")

    def embed(template: str) -> np.ndarray:
        return np.asarray(encode_texts([format_prompt(template, name) for name in class_names]), np.float64)

    first, *rest = templates
    total = embed(first)
    for template in rest:
        total = total + embed(template)
    norm = np.linalg.norm(total, axis=1, keepdims=True)
    return (total / np.maximum(norm, 1e-12)).astype(np.float32)


def zero_shot(
    emb: np.ndarray,
    labels: Sequence[str | None],
    class_names: Sequence[str],
    class_text_emb: np.ndarray,
    *,
    logit_scale: float = LOGIT_SCALE,
    top_k: Sequence[int] = (5,),
) -> dict:
    """Classify embeddings [N, D] against class text embeddings [C, D]; metrics as in `classification_metrics`.

    Rows labelled None are ignored; rows whose label is not a class name are counted under
    `unknown_labels` and ignored; fewer than two classes raise DataError. Scores are softmax(logit_scale * cosine) (ROC AUC uses them).
    """
    emb = np.asarray(emb, dtype=np.float32)
    class_text_emb = np.asarray(class_text_emb, dtype=np.float32)
    class_names = list(class_names)
    if emb.ndim != 2 or emb.shape[0] != len(labels):
        raise ValueError(f"emb must be [{len(labels)}, D], got {list(emb.shape)}")
    if class_text_emb.shape != (len(class_names), emb.shape[1]):
        raise ValueError(
            f"class_text_emb must be [{len(class_names)}, {emb.shape[1]}], got {list(class_text_emb.shape)}"
        )
    if len(set(class_names)) != len(class_names):
        raise ValueError("class_names has duplicates")
    if len(class_names) < 2:
        raise DataError(f"zero-shot needs at least two class names, got {class_names}")
    known = set(class_names)
    keep = [i for i, label in enumerate(labels) if label is not None and label in known]
    kept = [label for label in labels if label is not None and label in known]
    unknown = Counter(label for label in labels if label is not None and label not in known)
    if not keep:
        raise DataError("zero-shot: no row has a label among the class names")
    scores = softmax(logit_scale * (emb[keep] @ class_text_emb.T))
    out = classification_metrics(kept, scores, class_names, top_k=top_k)
    out["n_unlabelled"] = sum(label is None for label in labels)
    out["unknown_labels"] = dict(sorted(unknown.items()))
    return out
