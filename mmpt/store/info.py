"""Dataset figures for `mmpt data info`: rows, modalities and their combinations, splits, labels, versions, size."""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmpt.store.schema import LABEL, LABELS, MODALITIES, SPLIT, TEXT, TEXTS, sha_column

if TYPE_CHECKING:
    import lance

    from mmpt.store.dataset import MmptDataset


def _presence_column(modality: str) -> str:
    # A blob is present exactly when its sha256 is, and the sha column is cheap to scan.
    return TEXT if modality == TEXT else sha_column(modality)


def dataset_stats(ds: MmptDataset) -> dict[str, Any]:
    """Every figure of `data info` as a JSON-ready dict, computed in one streaming scan.

    A damaged data file is one DataError naming it and the repair (`mmpt data verify --repair`).
    """
    from mmpt.store.integrity import reading

    with reading(ds.uri):
        return _stats(ds)


def _stats(ds: MmptDataset) -> dict[str, Any]:
    lds = ds.lance
    names = lds.schema.names
    present_cols = [m for m in MODALITIES if _presence_column(m) in names]
    columns = [_presence_column(m) for m in present_cols] + [
        c for c in (LABEL, SPLIT, TEXTS, LABELS) if c in names
    ]
    combos = np.zeros(1 << len(MODALITIES), dtype=np.int64)
    splits: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    multilabels: Counter[str] = Counter()
    by_split: dict[str, Counter[str]] = {}
    captions = {"rows": 0, "captions": 0, "max_per_row": 0}
    multilabel_rows = 0
    rows = 0
    for batch in lds.to_batches(columns=columns, batch_size=65536):
        rows += batch.num_rows
        code = np.zeros(batch.num_rows, dtype=np.int64)
        for modality in present_cols:
            valid = pc.is_valid(batch.column(_presence_column(modality))).to_numpy(zero_copy_only=False)
            code |= valid.astype(np.int64) << MODALITIES.index(modality)
        combos += np.bincount(code, minlength=len(combos))
        for column, counter in ((SPLIT, splits), (LABEL, labels)):
            if column in batch.schema.names:
                counts = pc.value_counts(batch.column(column).drop_null())
                for item in counts:
                    counter[item["values"].as_py()] += item["counts"].as_py()
        split_names = (
            batch.column(SPLIT).fill_null("none").to_numpy(zero_copy_only=False)
            if SPLIT in batch.schema.names
            else np.full(batch.num_rows, "none", dtype=object)
        )
        for name in np.unique(split_names):
            picked = code[split_names == name]
            counter = by_split.setdefault(str(name), Counter())
            counter["rows"] += int(picked.size)
            for modality in present_cols:
                counter[modality] += int(np.count_nonzero(picked >> MODALITIES.index(modality) & 1))
        if TEXTS in batch.schema.names:
            lengths = pc.list_value_length(batch.column(TEXTS)).drop_null()
            if len(lengths):
                captions["rows"] += len(lengths)
                captions["captions"] += int(pc.sum(lengths).as_py() or 0)
                captions["max_per_row"] = max(captions["max_per_row"], int(pc.max(lengths).as_py() or 0))
        if LABELS in batch.schema.names:
            column = batch.column(LABELS)
            multilabel_rows += len(column.drop_null())
            for item in pc.value_counts(pc.list_flatten(column)):
                multilabels[item["values"].as_py()] += item["counts"].as_py()

    modalities = {
        m: int(sum(n for code, n in enumerate(combos) if code >> i & 1)) for i, m in enumerate(MODALITIES)
    }
    combinations = {
        "+".join(m for i, m in enumerate(MODALITIES) if code >> i & 1) or "none": int(n)
        for code, n in sorted(enumerate(combos), key=lambda item: -item[1])
        if n
    }
    return {
        "uri": ds.uri,
        "version": ds.version,
        "rows": rows,
        "modalities": modalities,
        "combinations": combinations,
        "splits": dict(sorted(splits.items())),
        "labels": dict(sorted(labels.items(), key=lambda item: (-item[1], item[0]))),
        "unlabelled": rows - sum(labels.values()),
        "by_split": {  # rows and each modality the dataset has, per split
            name: {k: n for k, n in counter.items() if k == "rows" or modalities[k]}
            for name, counter in sorted(by_split.items())
        },
        "captions": captions if TEXTS in names else None,
        "multilabels": {
            "rows": multilabel_rows,
            "labels": dict(sorted(multilabels.items(), key=lambda item: (-item[1], item[0]))),
        }
        if LABELS in names
        else None,
        "card": ds.card(),
        "versions": _versions(lds),
        "embedding_columns": _vector_columns(lds.schema, "emb_"),
        "projection_columns": _vector_columns(lds.schema, "proj_"),
        "metadata_columns": _metadata_columns(lds.schema),
        "size_bytes": _size_bytes(ds),
    }


def _versions(lds: lance.LanceDataset) -> list[dict[str, Any]]:
    tags: dict[int, list[str]] = {}
    try:
        for name, info in lds.tags.list().items():
            version = info["version"] if isinstance(info, dict) else getattr(info, "version", None)
            if version is not None:
                tags.setdefault(int(version), []).append(name)
    except Exception:  # noqa: BLE001 - tags are optional decoration
        tags = {}
    out = []
    for entry in lds.versions():
        stamp = entry["timestamp"]  # lance converts its int nanoseconds to a datetime; accept either
        when = stamp if isinstance(stamp, datetime) else datetime.fromtimestamp(stamp / 1e9)
        item: dict[str, Any] = {"version": int(entry["version"]), "timestamp": when.isoformat()}
        rows = (entry.get("metadata") or {}).get("total_rows")
        if rows is not None:
            item["rows"] = int(rows)
        if entry["version"] in tags:
            item["tag"] = ",".join(sorted(tags[entry["version"]]))
        out.append(item)
    return out


def _vector_columns(schema: pa.Schema, prefix: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for field in schema:
        if field.name.startswith(prefix):
            size = getattr(field.type, "list_size", None)
            out[field.name] = int(size) if size is not None else None
    return out


def _metadata_columns(schema: pa.Schema) -> dict[str, str]:
    from mmpt.store.write import metadata_types

    return {name: str(dtype) for name, dtype in metadata_types(schema).items()}


def _size_bytes(ds: MmptDataset) -> int:
    if "://" not in ds.uri:
        total = 0
        for root, _, files in os.walk(Path(ds.uri)):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    continue
        return total
    metadata = ds.lance.versions()[-1].get("metadata") or {}
    return int(metadata.get("total_files_size", 0))


def format_stats(stats: dict[str, Any], max_labels: int = 20) -> str:
    """The human-readable `data info` table."""
    lines = [
        f"dataset   {stats['uri']}  (version {stats['version']}, {_human(stats['size_bytes'])} on disk)",
        f"rows      {stats['rows']:,}",
    ]
    rows = max(stats["rows"], 1)
    lines.append(
        "modality  "
        + "   ".join(f"{m} {n:,} ({100 * n / rows:.0f}%)" for m, n in stats["modalities"].items())
    )
    lines.append("combos    " + "   ".join(f"{k} {n:,}" for k, n in stats["combinations"].items()))
    lines.append("splits    " + "   ".join(f"{k} {n:,}" for k, n in stats["splits"].items()))
    if len(stats["by_split"]) > 1 or "none" not in stats["by_split"]:
        for name, counts in stats["by_split"].items():
            lines.append(
                f"  {name:<7} {counts['rows']:,} rows: "
                + "   ".join(f"{m} {n:,}" for m, n in counts.items() if m != "rows")
            )
    if stats.get("captions") and stats["captions"]["rows"]:
        cap = stats["captions"]
        lines.append(
            f"captions  {cap['captions']:,} in {cap['rows']:,} rows (up to {cap['max_per_row']} per row)"
        )
    labels = list(stats["labels"].items())
    shown = "   ".join(f"{k} {n:,}" for k, n in labels[:max_labels])
    more = f"   ... {len(labels) - max_labels} more" if len(labels) > max_labels else ""
    lines.append(
        f"labels    {len(labels)} distinct"
        + (f": {shown}{more}" if labels else "")
        + (f"   (unlabelled {stats['unlabelled']:,})" if stats["unlabelled"] else "")
    )
    if stats.get("multilabels"):
        multi = list(stats["multilabels"]["labels"].items())
        shown = "   ".join(f"{k} {n:,}" for k, n in multi[:max_labels])
        more = f"   ... {len(multi) - max_labels} more" if len(multi) > max_labels else ""
        lines.append(
            f"multi     {stats['multilabels']['rows']:,} rows, {len(multi)} distinct labels"
            + (f": {shown}{more}" if multi else "")
        )
    if stats.get("card"):
        card = stats["card"]
        head = [card.get(k) for k in ("name", "license", "homepage") if card.get(k)]
        lines.append("card      " + "  |  ".join(head))
        lines += [f"          {k}: {card[k]}" for k in ("modalities", "notes", "citation") if card.get(k)]
    if stats["metadata_columns"]:
        lines.append("metadata  " + ", ".join(f"{k} ({v})" for k, v in stats["metadata_columns"].items()))
    if stats["embedding_columns"]:
        lines.append("embedding " + ", ".join(f"{k} [{d}]" for k, d in stats["embedding_columns"].items()))
    if stats["projection_columns"]:
        lines.append("projection " + ", ".join(stats["projection_columns"]))
    lines.append("versions")
    for v in stats["versions"]:
        tag = f"  tag {v['tag']}" if v.get("tag") else ""
        rows_txt = f"  {v['rows']:,} rows" if "rows" in v else ""
        lines.append(f"  v{v['version']:<4} {v['timestamp'][:19]}{rows_txt}{tag}")
    return "\n".join(lines)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
