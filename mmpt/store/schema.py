"""The dataset row contract (DESIGN.md): column names and the Arrow schema of an mmpt Lance dataset."""

from __future__ import annotations

import pyarrow as pa
from lance.blob import blob_field

MODALITIES: tuple[str, ...] = ("image", "text", "audio")
BLOB_MODALITIES: tuple[str, ...] = ("image", "audio")
SPLITS: tuple[str, ...] = ("train", "val", "test")

ID, TEXT, IMAGE, AUDIO, LABEL, SPLIT, SOURCE = "id", "text", "image", "audio", "label", "split", "source"
IMAGE_SHA256, AUDIO_SHA256 = "image_sha256", "audio_sha256"
CORE_COLUMNS: tuple[str, ...] = (ID, TEXT, IMAGE, AUDIO, IMAGE_SHA256, AUDIO_SHA256, LABEL, SPLIT, SOURCE)
# Optional list<string> columns, present only where the source has them: every caption of an item (`text`
# holds the first) and every label of a multi-label row (`label` holds the first, the primary one).
TEXTS, LABELS = "texts", "labels"
LIST_COLUMNS: tuple[str, ...] = (TEXTS, LABELS)
STRING_LIST = pa.list_(pa.string())


def sha_column(modality: str) -> str:
    """Name of the column holding the sha256 hex digest of a blob modality's original bytes."""
    return f"{modality}_sha256"


def ready_column(modality: str) -> str:
    """Name of the optional blob column holding a blob modality's training-ready copy (mmpt.store.ready);
    its sha256 sits in `sha_column(ready_column(m))`. Null where the original is already training-ready."""
    return f"{modality}_ready"


READY_COLUMNS: tuple[str, ...] = tuple(ready_column(m) for m in BLOB_MODALITIES)
READY_SHA256: tuple[str, ...] = tuple(sha_column(c) for c in READY_COLUMNS)


def embedding_column(run: str, modality: str) -> str:
    """Name of the embedding column a run writes for one modality."""
    return f"emb_{run}_{modality}"


def projection_column(run: str, method: str) -> str:
    """Name of the 2-D projection column a run writes for one method (pca, umap, tsne)."""
    return f"proj_{run}_{method}"


def base_schema(metadata: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """Arrow schema of a new dataset: the core columns, `texts` / `labels` when `metadata` names them (a source
    with several captions or labels per row), then free metadata columns (all nullable)."""
    fields = [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(TEXT, pa.string()),
        blob_field(IMAGE, nullable=True),
        blob_field(AUDIO, nullable=True),
        pa.field(IMAGE_SHA256, pa.string()),
        pa.field(AUDIO_SHA256, pa.string()),
        pa.field(LABEL, pa.string()),
        pa.field(SPLIT, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string()),
    ]
    metadata = metadata or {}
    fields += [pa.field(name, STRING_LIST) for name in LIST_COLUMNS if name in metadata]  # texts, labels
    for name, dtype in metadata.items():
        if name not in LIST_COLUMNS:
            fields.append(pa.field(name, dtype))
    return pa.schema(fields)
