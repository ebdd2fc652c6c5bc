"""The eval report: run every applicable evaluation on a split's embeddings, assemble, flatten, save.

Report layout (keys as in DESIGN.md; each section holds one entry per modality or ordered pair):
    {"zero_shot": {"image": {"accuracy", "macro_f1", ...}}, "retrieval": {"image_to_text": {"r@1", ...}},
     "label_match": {"image_to_text": {"p@1"}}, "linear_probe": {"image": {...}}, "meta": {...}}
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

from mmpt.errors import DataError
from mmpt.eval.multilabel import multilabel_zero_shot
from mmpt.eval.probe import linear_probe
from mmpt.eval.retrieval import label_match, retrieval
from mmpt.eval.zero_shot import DEFAULT_PROMPT, class_text_embeddings, zero_shot

MODALITIES = ("image", "text", "audio")
ZERO_SHOT_MODALITIES = ("image", "audio")
SECTIONS = ("zero_shot", "retrieval", "label_match", "linear_probe")
# Per-class and per-row details: kept in the JSON, left out of `flatten` (tables and comparisons).
DETAIL_KEYS = frozenset(
    {
        "classes",
        "absent_classes",
        "per_class",
        "confusion_matrix",
        "roc_auc_per_class",
        "roc_curves",
        "unknown_labels",
        "unseen_test_labels",
        "ap_per_class",
        "fold_accuracy",
    }
)

# modality -> (row ids, labels (None where a row has none), L2-normalised embeddings [N, D])
Embeddings = Mapping[str, tuple[Sequence[str], Sequence[str | None], np.ndarray]]
Prompt = str | Sequence[str] | Mapping[str, str | Sequence[str]]


def pair_name(query: str, target: str) -> str:
    """The report key of an ordered modality pair, e.g. "image_to_text"."""
    return f"{query}_to_{target}"


def _ordered(modalities: Sequence[str]) -> list[str]:
    return sorted(modalities, key=lambda m: (MODALITIES.index(m) if m in MODALITIES else len(MODALITIES), m))


def build_report(
    *,
    zero_shot: Mapping[str, dict] | None = None,
    retrieval: Mapping[str, dict] | None = None,
    label_match: Mapping[str, dict] | None = None,
    linear_probe: Mapping[str, dict] | None = None,
    meta: Mapping | None = None,
) -> dict:
    """Assemble the report dict with every section present (empty where not applicable) and stamped meta."""
    sections = {
        "zero_shot": zero_shot,
        "retrieval": retrieval,
        "label_match": label_match,
        "linear_probe": linear_probe,
    }
    report: dict = {name: dict(section or {}) for name, section in sections.items()}
    for name in ("retrieval", "label_match"):
        bad = [key for key in report[name] if "_to_" not in key]
        if bad:
            raise ValueError(f"{name} keys must be '<query>_to_<target>', got {bad}")
    from mmpt import __version__

    report["meta"] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "mmpt_version": __version__,
        **dict(meta or {}),
    }
    return report


def flatten(report: Mapping, *, details: bool = False) -> dict[str, float]:
    """Numeric metrics as dotted keys ("retrieval.image_to_text.r@1": 0.5); meta and None values left out."""
    out: dict[str, float] = {}

    def walk(node: Mapping, prefix: str) -> None:
        for key, value in node.items():
            if not details and key in DETAIL_KEYS:
                continue
            name = f"{prefix}.{key}"
            if isinstance(value, Mapping):
                walk(value, name)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = value

    for section in SECTIONS:
        walk(report.get(section) or {}, section)
    return out


def _templates(prompt: Prompt, modality: str) -> str | Sequence[str]:
    return prompt.get(modality, DEFAULT_PROMPT) if isinstance(prompt, Mapping) else prompt


def _prompt_meta(prompt: Prompt) -> str | list[str] | dict:
    if isinstance(prompt, str):
        return prompt
    return dict(prompt) if isinstance(prompt, Mapping) else list(prompt)


def evaluate_embeddings(
    embs: Embeddings,
    class_text_emb_fn: Callable[[list[str]], np.ndarray] | None = None,
    probe_train: Embeddings | None = None,
    *,
    prompt: Prompt = DEFAULT_PROMPT,
    class_names: Sequence[str] | None = None,
    meta: Mapping | None = None,
    probe_options: Mapping | None = None,
    label_sets: Mapping[str, Sequence[Sequence[str] | None]] | None = None,
) -> dict:
    """Run everything applicable to one split's embeddings and return the report.

    Zero-shot for image/audio when `class_text_emb_fn` is given and the rows have labels: it encodes the
    prompt texts (`prompt` filled with each class name; with the default "{label}" the bare class names,
    so a function that fills its own template works too) into [C, D]. Retrieval for every ordered pair of
    present modalities; label match for every ordered pair with labels (a same-modality pair never matches
    a row with itself); a linear probe per modality present in `probe_train`. Class names default to the sorted labels of `embs`. What cannot be
    computed is listed in meta["skipped"] with the reason instead of failing the whole report.
    `label_sets` (modality -> each row's labels, aligned with `embs`; a dataset's `labels` column) adds the
    multi-label figure `zero_shot.<m>.mAP`, over the classes of all label sets.
    """
    started = time.perf_counter()
    modalities = _ordered(list(embs))
    labelled = [m for m in modalities if any(label is not None for label in embs[m][1])]
    names = sorted(class_names or {label for m in labelled for label in embs[m][1] if label is not None})
    skipped: list[str] = []
    sections: dict[str, dict] = {name: {} for name in SECTIONS}

    def attempt(section: str, key: str, compute: Callable[[], dict]) -> None:
        try:
            sections[section][key] = compute()
        except DataError as exc:
            skipped.append(f"{section}.{key}: {exc}")

    if len(names) == 1:
        skipped.append(
            f"zero_shot, label_match: label column has a single class {names[0]!r}; need two or more"
        )
    elif names and class_text_emb_fn is not None:
        class_emb_cache: dict[str, np.ndarray] = {}
        for m in (m for m in labelled if m in ZERO_SHOT_MODALITIES):
            templates = _templates(prompt, m)
            key = json.dumps(templates)
            if key not in class_emb_cache:
                class_emb_cache[key] = class_text_embeddings(names, class_text_emb_fn, templates)
            _, labels, emb = embs[m]
            attempt("zero_shot", m, partial(zero_shot, emb, labels, names, class_emb_cache[key]))

    if label_sets and class_text_emb_fn is not None:
        multi_names = sorted({x for m in label_sets for labels in label_sets[m] for x in labels or ()})
        for m in (m for m in modalities if m in ZERO_SHOT_MODALITIES and m in label_sets):
            class_emb = class_text_embeddings(multi_names, class_text_emb_fn, _templates(prompt, m))
            try:
                figures = multilabel_zero_shot(embs[m][2], label_sets[m], multi_names, class_emb)
            except DataError as exc:
                skipped.append(f"zero_shot.{m}.mAP: {exc}")
                continue
            sections["zero_shot"].setdefault(m, {}).update(figures)

    for q in modalities:
        for t in modalities:
            if q == t:
                continue
            (q_ids, _, q_emb), (t_ids, _, t_emb) = embs[q], embs[t]
            attempt("retrieval", pair_name(q, t), partial(retrieval, q_emb, q_ids, t_emb, t_ids))

    if len(names) > 1:
        for q in labelled:
            for t in labelled:
                (q_ids, q_labels, q_emb), (t_ids, t_labels, t_emb) = embs[q], embs[t]
                match = partial(
                    label_match, q_emb, q_labels, t_emb, t_labels, q_ids, t_ids, exclude_same_id=q == t
                )
                attempt("label_match", pair_name(q, t), match)

    train_embs: Embeddings = probe_train or {}
    for m in _ordered([m for m in train_embs if m in embs]):
        _, train_labels, train_emb = train_embs[m]
        _, test_labels, test_emb = embs[m]
        attempt(
            "linear_probe",
            m,
            partial(
                linear_probe, train_emb, train_labels, test_emb, test_labels, **dict(probe_options or {})
            ),
        )

    info = {
        "prompt": _prompt_meta(prompt) if class_text_emb_fn is not None else None,
        "modalities": modalities,
        "n_rows": {m: len(embs[m][0]) for m in modalities},
        "n_train_rows": {m: len(train_embs[m][0]) for m in train_embs},
        "class_names": names,
        "skipped": skipped,
        "elapsed_s": round(time.perf_counter() - started, 3),
        **dict(meta or {}),
    }
    return build_report(**sections, meta=info)


def save_report(report: Mapping, run_dir: str | os.PathLike, name: str = "eval") -> Path:
    """Write RUN/eval/<name>.json atomically (temp file in the same folder, then rename)."""
    stem = name.removesuffix(".json")
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise ValueError(f"report name must be a plain file name, got {name!r}")
    folder = Path(run_dir) / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_report(path: str | os.PathLike) -> dict:
    """Read a report written by `save_report`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _fmt(x: object, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def format_report(report: Mapping) -> str:
    """A compact human-readable summary for the CLI: one line per modality or pair, then what was skipped."""
    meta = report.get("meta", {})
    head = "  ".join(
        f"{k}={meta[k]}" for k in ("run", "dataset", "version", "split") if meta.get(k) is not None
    )
    lines = [f"eval  {head}".rstrip()]
    if meta.get("prompt") is not None:
        lines[0] += f"  prompt={meta['prompt']!r}"
    for m, r in report.get("zero_shot", {}).items():
        if r.get("mAP") is not None:
            lines.append(
                f"zero-shot     {m:<14} mAP {_fmt(r['mAP'])}  ({r.get('n_multilabel_classes')} classes, multi-label)"
            )
        if "accuracy" not in r:
            continue
        absent = f"; absent from test: {', '.join(r['absent_classes'])}" if r.get("absent_classes") else ""
        lines.append(
            f"zero-shot     {m:<14} acc {_fmt(r.get('accuracy'))}  macro-F1 {_fmt(r.get('macro_f1'))}  "
            f"ROC AUC {_fmt(r.get('roc_auc'))}  ({len(r.get('classes', []))} classes, {r.get('n')} rows{absent})"
        )
    for pair, r in report.get("retrieval", {}).items():
        lines.append(
            f"retrieval     {pair:<14} R@1 {_fmt(r.get('r@1'))}  R@5 {_fmt(r.get('r@5'))}  "
            f"R@10 {_fmt(r.get('r@10'))}  median rank {_fmt(r.get('median_rank'), 1)}  ({r.get('n_queries')} queries)"
        )
    for pair, r in report.get("label_match", {}).items():
        lines.append(f"label match   {pair:<14} P@1 {_fmt(r.get('p@1'))}  ({r.get('n_queries')} queries)")
    for m, r in report.get("linear_probe", {}).items():
        unseen = r.get("unseen_test_labels") or {}
        extra = (
            f"; unseen test labels left out: {', '.join(f'{k} ({v})' for k, v in unseen.items())}"
            if unseen
            else ""
        )
        lines.append(
            f"linear probe  {m:<14} acc {_fmt(r.get('accuracy'))}  macro-F1 {_fmt(r.get('macro_f1'))}  "
            f"ROC AUC {_fmt(r.get('roc_auc'))}  ({r.get('n_train')} train, {r.get('n')} test rows{extra})"
        )
    lines += [f"skipped       {reason}" for reason in meta.get("skipped", [])]
    return "\n".join(lines)
