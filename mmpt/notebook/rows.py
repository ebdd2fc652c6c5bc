"""Headless row browsing for DatasetPanel: filter a dataset's rows by split, label, modality and text, page them.

No ipywidgets here: the panel only displays what this returns. Metadata columns are read once (cheap: no blobs);
blobs are read only for the rows of the page shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmpt.store.dataset import MmptDataset
from mmpt.store.schema import ID, LABEL, SPLIT, TEXT, sha_column

ANY = "(any)"


class RowBrowser:
    """Filter and page the rows of an MmptDataset; positions index `read_blobs`."""

    def __init__(self, dataset: MmptDataset) -> None:
        self.dataset = dataset
        names = dataset.schema.names
        columns = [
            c for c in (ID, TEXT, LABEL, SPLIT, sha_column("image"), sha_column("audio")) if c in names
        ]
        frame = dataset.lance.to_table(columns=columns).to_pandas()
        self.frame = pd.DataFrame(
            {
                "id": frame[ID],
                "text": frame[TEXT] if TEXT in frame else None,
                "label": frame[LABEL] if LABEL in frame else None,
                "split": frame[SPLIT],
                "image": frame[sha_column("image")].notna() if sha_column("image") in frame else False,
                "audio": frame[sha_column("audio")].notna() if sha_column("audio") in frame else False,
            }
        )
        self.frame["has_text"] = self.frame["text"].notna()

    def choices(self, column: str) -> list[str]:
        """Distinct non-null values of `split` or `label`, sorted."""
        return sorted(str(v) for v in self.frame[column].dropna().unique())

    def filter(
        self,
        split: str | None = None,
        label: str | None = None,
        modality: str | None = None,
        text: str | None = None,
    ) -> np.ndarray:
        """Row positions matching every given criterion (None or '(any)' means no constraint)."""
        keep = np.ones(len(self.frame), dtype=bool)
        for column, value in (("split", split), ("label", label)):
            if value not in (None, "", ANY):
                keep &= (self.frame[column] == value).to_numpy()
        if modality not in (None, "", ANY):
            keep &= self.frame["has_text" if modality == "text" else modality].to_numpy(dtype=bool)
        if text:
            needle = text.lower()
            hit = self.frame["text"].fillna("").str.lower().str.contains(needle, regex=False)
            hit |= self.frame["id"].str.lower().str.contains(needle, regex=False)
            keep &= hit.to_numpy()
        return np.flatnonzero(keep)

    def items(self, positions: np.ndarray) -> list[Any]:
        """Hover-card items (thumbnails, WAV, spectrogram, caption) for these row positions."""
        from mmpt.explore.media import Item, build_item

        positions = [int(p) for p in positions]
        if not positions:
            return []
        names = self.dataset.schema.names
        blobs = {
            m: self.dataset.read_blobs(m, positions) if m in names else [None] * len(positions)
            for m in ("image", "audio")
        }
        out = []
        for k, pos in enumerate(positions):
            row = self.frame.iloc[pos]
            meta = {
                "id": row["id"],
                "modality": None,
                "row": pos,
                "label": row["label"],
                "split": row["split"],
                "caption": row["text"],
            }
            out.append(build_item(Item(**meta), blobs["image"][k], blobs["audio"][k]))
        return out


def ingest_report(dataset: MmptDataset) -> dict[str, Any] | None:
    """The `<name>.report.json` the last ingest into this dataset wrote, or None (local datasets only)."""
    from mmpt.store.ingest import report_path_for

    path = Path(report_path_for(dataset.uri))
    if "://" in dataset.uri or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
