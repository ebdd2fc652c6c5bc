"""Run a standard protocol (mmpt.eval.protocols) on a model and a dataset, and print it beside the papers.

The report has the usual sections (`zero_shot.audio.accuracy`, `retrieval.text_to_audio.r@1`, ...) so that
`flatten`, comparisons and HTML reports read it like any other, plus a `protocol` section: its name, the
rows it covered, notes on what differs from the published setting, and the published figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmpt.errors import DataError
from mmpt.eval.multi_caption import caption_retrieval
from mmpt.eval.protocols import Protocol, get_protocol
from mmpt.eval.report import build_report
from mmpt.eval.zero_shot import class_text_embeddings, zero_shot
from mmpt.store.schema import ID, TEXT, TEXTS

if TYPE_CHECKING:
    from mmpt.models.model import MultimodalModel
    from mmpt.store.dataset import MmptDataset

FOLD = "fold"  # the metadata column the ESC-50 / UrbanSound8K recipes keep
TextFn = Callable[[list[str]], np.ndarray]


def fold_report(
    protocol: Protocol,
    ids: Sequence[str],
    labels: Sequence[str | None],
    emb: np.ndarray,
    folds: Mapping[str, Any],
    encode_texts: TextFn,
) -> tuple[dict, list[str]]:
    """Zero-shot accuracy per fold and the mean over folds (the published figure), with pooled metrics.

    `folds` maps row id -> fold number; rows without a label take no part. Returns the `zero_shot` entry
    and notes on what differs from the published setting.
    """
    keep = [i for i in range(len(ids)) if labels[i] is not None]
    if not keep:
        raise DataError(f"{protocol.name} protocol: no row has a label (the class name)")
    kept_labels = [str(labels[i]) for i in keep]
    names = sorted(set(kept_labels))
    prompts = [name.replace("_", " ") for name in names]  # LAION-CLAP writes ESC-50's class names so
    class_emb = class_text_embeddings(prompts, encode_texts, protocol.prompt)
    row_fold = []
    for i in keep:
        value = folds.get(ids[i])
        number = _fold_number(value)
        if number is None or number not in _fold_range(protocol):
            raise DataError(
                f"{protocol.name} protocol: row {ids[i]!r} has fold {value!r}; expected 1..{protocol.folds}"
            )
        row_fold.append(number)
    emb = np.asarray(emb)[keep]
    pooled = zero_shot(emb, kept_labels, names, class_emb)
    fold_accuracy = {}
    for fold in sorted(set(row_fold)):
        rows = [r for r, f in enumerate(row_fold) if f == fold]
        predicted = (emb[rows] @ class_emb.T).argmax(axis=1)
        truth = [names.index(kept_labels[r]) for r in rows]
        fold_accuracy[str(fold)] = float(np.mean(predicted == np.array(truth)))
    entry = {
        **pooled,
        "accuracy": float(np.mean(list(fold_accuracy.values()))),
        "pooled_accuracy": pooled["accuracy"],
        "fold_accuracy": fold_accuracy,
        "n_folds": len(fold_accuracy),
    }
    notes = []
    missing = [str(f) for f in _fold_range(protocol) if str(f) not in fold_accuracy]
    if missing:
        notes.append(
            f"folds {', '.join(missing)} have no rows: the published figure averages all {protocol.folds}"
        )
    return entry, notes


def _fold_range(protocol: Protocol) -> range:
    return range(1, protocol.folds + 1)


def _fold_number(value: Any) -> int | None:
    """A fold cell as its number: 3, 3.0 and "3" are fold 3; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def caption_report(
    protocol: Protocol,
    ids: Sequence[str],
    emb: np.ndarray,
    captions: Mapping[str, Sequence[str]],
    encode_texts: TextFn,
    batch_size: int = 256,
) -> tuple[dict, list[str]]:
    """Retrieval between the items and all their captions (mmpt.eval.multi_caption); `captions` maps item
    id -> its captions. Returns the `retrieval` entries and notes."""
    bare = [rid for rid in ids if not captions.get(rid)]
    if bare:
        raise DataError(
            f"{protocol.name} protocol: {len(bare)} of {len(ids)} {protocol.split} items have no caption "
            f"(e.g. {bare[0]!r}); every item is scored against its captions"
        )
    texts = [text for rid in ids for text in captions[rid]]
    owners = [rid for rid in ids for _ in captions[rid]]
    parts = [encode_texts(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    text_emb = np.concatenate(parts).astype(np.float32)
    retrieval = caption_retrieval(np.asarray(emb), ids, text_emb, owners, item=protocol.modality)
    counts = [len(captions[rid]) for rid in ids]
    notes = []
    if min(counts) != max(counts):
        notes.append(f"items have {min(counts)} to {max(counts)} captions")
    return retrieval, notes


def evaluate_protocol(
    model: MultimodalModel,
    dataset: MmptDataset,
    name: str,
    encode_texts: TextFn,
    *,
    device: str | torch.device = "auto",
    batch_size: int = 128,
    progress: bool = True,
) -> dict[str, Any]:
    """Run protocol `name` on `model` over `dataset`, its texts embedded by `encode_texts` (the model's text
    tower: `mmpt.eval.run.text_embedder`); a dataset lacking what the protocol needs is a one-line DataError."""
    from mmpt.embed.compute import compute_embeddings, pick_device

    protocol = get_protocol(name)
    m = protocol.modality
    where = f"{protocol.name} protocol on {dataset.uri}"
    if m not in model.modalities or "text" not in model.modalities:
        raise DataError(f"{where}: the model needs {m} and text towers")
    if m not in dataset.modalities():
        raise DataError(f"{where}: the dataset has no {m}")
    columns = dataset.schema.names
    if protocol.kind == "folds" and FOLD not in columns:
        raise DataError(
            f"{where}: no `{FOLD}` column; the protocol scores each of the {protocol.folds} official folds "
            f"(ingest the recipe's manifest, which keeps it)"
        )
    if protocol.kind == "captions" and TEXTS not in columns:
        raise DataError(
            f"{where}: no `{TEXTS}` column; the protocol scores every caption of each item "
            f"(ingest a manifest with a texts list column, docs/datasets.md)"
        )
    if protocol.split is not None and len(dataset.split_indices(protocol.split)) == 0:
        raise DataError(f"{where}: split {protocol.split!r} is empty")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    embs = compute_embeddings(
        model, dataset, protocol.split, [m], batch_size=batch_size, device=dev, progress=progress
    )[m]
    if not embs.ids:
        raise DataError(f"{where}: no row of split {protocol.split or '(all)'} holds {m}")
    rows = dataset.split_indices(protocol.split)
    sections: dict[str, dict] = {}
    if protocol.kind == "folds":
        table = dataset.take(rows, columns=[ID, FOLD]).to_pydict()
        entry, notes = fold_report(
            protocol,
            embs.ids,
            embs.labels,
            embs.vectors,
            dict(zip(table[ID], table[FOLD], strict=True)),
            encode_texts,
        )
        sections["zero_shot"] = {m: entry}
        n_items = entry["n"]
    else:
        table = dataset.take(rows, columns=[ID, TEXT, TEXTS]).to_pydict()
        captions = {
            rid: many or ([one] if one else [])
            for rid, one, many in zip(table[ID], table[TEXT], table[TEXTS], strict=True)
        }
        sections["retrieval"], notes = caption_report(
            protocol, embs.ids, embs.vectors, captions, encode_texts, batch_size=batch_size
        )
        n_items = len(embs.ids)
        lost = len(rows) - n_items
        if lost:
            notes.append(f"{lost} {protocol.split} rows hold no {m} and take no part")
    if protocol.expected_items is not None and n_items != protocol.expected_items:
        notes.append(f"{n_items:,} items scored; the published figures are on {protocol.expected_items:,}")
    report = build_report(
        **sections,
        meta={
            "dataset": str(dataset.uri),
            "version": dataset.version,
            "split": protocol.split,
            "prompt": protocol.prompt if protocol.kind == "folds" else None,
            "skipped": [],
        },
    )
    report["protocol"] = {
        "name": protocol.name,
        "title": protocol.title,
        "items": n_items,
        "notes": notes,
        "published": [
            {"metric": r.metric, "value": r.value, "model": r.model, "source": r.source}
            for r in protocol.references
        ],
    }
    return report


def protocol_table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The protocol's figures as rows: metric, this run (percent), published (percent or None), source."""
    info = report["protocol"]
    protocol = get_protocol(info["name"])
    published = {r["metric"]: r for r in info.get("published", [])}
    out = []
    for metric in protocol.metrics:
        node: Any = report
        for part in metric.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        ref = published.get(metric)
        out.append(
            {
                "metric": metric,
                "value": None if node is None else 100.0 * float(node),
                "published": ref["value"] if ref else None,
                "model": ref["model"] if ref else None,
                "source": ref["source"] if ref else None,
            }
        )
    return out


def format_protocol(report: Mapping[str, Any]) -> str:
    """The protocol's figures in a table beside the published ones, then the sources and notes."""
    info = report["protocol"]
    meta = report.get("meta", {})
    rows = protocol_table(report)
    lines = [
        f"{info['title']}  ({info['items']:,} items; {meta.get('dataset')} version {meta.get('version')})",
        f"{'metric':<34} {'this run':>9} {'published':>10}",
    ]
    sources: list[str] = []
    for row in rows:
        ours = "-" if row["value"] is None else f"{row['value']:.1f}"
        theirs = "-" if row["published"] is None else f"{row['published']:.1f}"
        mark = ""
        if row["source"] is not None:
            cited = f"{row['model']}: {row['source']}"
            if cited not in sources:
                sources.append(cited)
            mark = f" [{sources.index(cited) + 1}]"
        lines.append(f"{row['metric']:<34} {ours:>9} {theirs:>10}{mark}")
    folds = report.get("zero_shot", {}).get(get_protocol(info["name"]).modality, {}).get("fold_accuracy")
    if folds:
        lines.append("per fold: " + "  ".join(f"{k}: {100 * v:.1f}" for k, v in folds.items()))
    lines += [f"[{i}] {s}" for i, s in enumerate(sources, start=1)]
    lines += [f"note: {n}" for n in info.get("notes", [])]
    return "\n".join(lines)
