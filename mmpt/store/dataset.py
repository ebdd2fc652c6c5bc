"""Open an mmpt dataset: a thin handle over `lance.LanceDataset` with splits, modalities, stats and preview."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmpt.errors import DataError
from mmpt.store.integrity import manifest_versions, quiet_native_stderr, reads_dataset, reason_of
from mmpt.store.schema import BLOB_MODALITIES, ID, MODALITIES, SPLIT, TEXT, sha_column

if TYPE_CHECKING:
    from mmpt.store.preview import PreviewHTML


def _fatal(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


def open_lance(
    uri: str | Path, version: int | str | None = None, storage_options: dict[str, str] | None = None
) -> lance.LanceDataset:
    """`lance.dataset(uri)` with every failure (missing path, not Lance, corrupt manifest) as one-line DataError."""
    uri = str(uri)
    if "://" not in uri:
        path = Path(uri)
        if not path.exists():
            raise DataError(f"dataset not found: {uri}")
        if not path.is_dir() or not (path / "_versions").is_dir():
            raise DataError(f"{uri} is not a Lance dataset")
    try:
        with quiet_native_stderr():  # a corrupt manifest panics, and Rust prints its own report first
            return lance.dataset(uri, version=version, storage_options=storage_options)
    except BaseException as exc:  # noqa: BLE001 - a corrupt manifest panics with a BaseException
        if _fatal(exc):
            raise
        reason = reason_of(exc)
        if version is not None and "not found" in reason.lower():
            raise DataError(f"{uri} has no version {version!r}") from None
        if "://" in uri or version is not None:
            raise DataError(f"{uri} is not a readable Lance dataset: {reason}") from None
        newest = manifest_versions(uri)
        where = f"its newest manifest {newest[0][1]}" if newest else "it"
        raise DataError(
            f"{uri} is not a readable Lance dataset: {where} is damaged ({reason}); "
            f"`mmpt data verify --repair {uri}` restores the newest version that reads fully"
        ) from None


CARD_KEY = "mmpt.card"  # the Lance config key holding the dataset card as JSON


def report_path_for(out: str | Path) -> str:
    """Where the report of an ingest into `out` goes: next to it, `corpus.lance` -> `corpus.report.json`."""
    text = str(out).rstrip("/")
    stem = text[: -len(".lance")] if text.endswith(".lance") else text
    return stem + ".report.json"


class MmptDataset:
    """An mmpt corpus in Lance. Row positions (0..len-1, scan order) index `take` and `read_blobs`."""

    def __init__(self, ds: lance.LanceDataset, uri: str, storage_options: dict[str, str] | None = None):
        missing = [c for c in (ID, SPLIT) if c not in ds.schema.names]
        if missing:
            raise DataError(f"{uri} is a Lance dataset but not an mmpt one: no {', '.join(missing)} column")
        self.lance = ds
        self.uri = uri
        self.storage_options = storage_options
        self._splits: np.ndarray | None = None

    @property
    def version(self) -> int:
        """The Lance version this handle reads (pinned: readers are snapshot-isolated)."""
        return self.lance.version

    @property
    def schema(self) -> pa.Schema:
        return self.lance.schema

    def __len__(self) -> int:
        return self.lance.count_rows()

    def __repr__(self) -> str:
        return f"MmptDataset({self.uri!r}, version={self.version}, rows={len(self)})"

    def checkout(self, version: int | str) -> MmptDataset:
        """The same dataset at another version (number or tag)."""
        return open_dataset(self.uri, version=version, storage_options=self.storage_options)

    def split_indices(self, split: str | None = None) -> np.ndarray:
        """Row positions (int64, ascending) of one split, or of every row when split is None."""
        splits = self._split_column()
        if split is None:
            return np.arange(len(splits), dtype=np.int64)
        return np.flatnonzero(splits == split).astype(np.int64)

    @reads_dataset("self")
    def _split_column(self) -> np.ndarray:
        """The split of every row (read once, then cached)."""
        if self._splits is None:
            self._splits = self.lance.to_table(columns=[SPLIT]).column(SPLIT).to_numpy(zero_copy_only=False)
        return self._splits

    def splits(self) -> list[str]:
        """Split names present in the dataset."""
        return sorted(set(self._split_column().tolist()))

    @reads_dataset("self")
    def modalities(self) -> set[str]:
        """Modalities with at least one non-null value."""
        present = set()
        for modality in MODALITIES:
            column = TEXT if modality == TEXT else sha_column(modality)
            if column not in self.schema.names:
                continue
            table = self.lance.to_table(columns=[column], filter=f"{column} IS NOT NULL", limit=1)
            if table.num_rows:
                present.add(modality)
        return present

    @reads_dataset("self")
    def take(self, indices: Any, columns: list[str] | None = None) -> pa.Table:
        """Non-blob columns of rows at these positions (blob columns come back as descriptors; use read_blobs)."""
        return self.lance.take(list(map(int, indices)), columns=columns)

    @reads_dataset("self")
    def read_blobs(self, modality: str, indices: Any) -> list[bytes | None]:
        """Original encoded bytes of one blob modality for rows at these positions, in the given order."""
        if modality not in BLOB_MODALITIES:
            raise DataError(
                f"{modality!r} is not a blob column; expected one of {', '.join(BLOB_MODALITIES)}"
            )
        positions = [int(i) for i in indices]
        if not positions:
            return []
        return [data for _, data in self.lance.read_blobs(modality, indices=positions, preserve_order=True)]

    @reads_dataset("self")
    def ids(self, indices: Any = None) -> list[str]:
        """Ids of rows at these positions (all rows when None)."""
        if indices is None:
            return self.lance.to_table(columns=[ID]).column(ID).to_pylist()
        return self.take(indices, columns=[ID]).column(ID).to_pylist()

    def verify(self, modality: str, indices: Any) -> list[bool]:
        """Whether each blob still matches its stored sha256 (True for rows without that modality)."""
        from mmpt.store.write import sha256_hex

        blobs = self.read_blobs(modality, indices)
        digests = self.take(indices, columns=[sha_column(modality)]).column(0).to_pylist()
        return [
            b is None and d is None or (b is not None and sha256_hex(b) == d)
            for b, d in zip(blobs, digests, strict=True)
        ]

    def stats(self) -> dict[str, Any]:
        """The figures `mmpt data info --json` prints (rows, modalities, combinations, splits, labels, ...)."""
        from mmpt.store.info import dataset_stats

        return dataset_stats(self)

    def preview(self, n: int = 8, split: str | None = None) -> PreviewHTML:
        """HTML table of the first n rows: image thumbnails, audio players, captions and labels."""
        from mmpt.store.preview import preview_html

        return preview_html(self, n, split)

    def _repr_html_(self) -> str:
        return self.preview(8)._repr_html_()

    def ingest_report(self) -> dict[str, Any] | None:
        """The `<name>.report.json` the last ingest into this dataset wrote; None if remote, absent or corrupt."""
        import json

        if "://" in self.uri:
            return None
        path = Path(report_path_for(self.uri))
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return report if isinstance(report, dict) else None

    def card(self) -> dict[str, str] | None:
        """The dataset card a recipe recorded (name, licence, homepage, citation...); None when there is none."""
        import json

        text = (self.lance.config() or {}).get(CARD_KEY)
        try:
            card = json.loads(text) if text else None
        except json.JSONDecodeError:
            return None
        return {str(k): str(v) for k, v in card.items()} if isinstance(card, dict) else None

    def set_card(self, card: dict[str, str]) -> MmptDataset:
        """Record `card` (licence, source, citation) in the dataset's config; a new version, kept by later ones."""
        import json

        self.lance.update_config({CARD_KEY: json.dumps(card, ensure_ascii=False, sort_keys=True)})
        return open_dataset(self.uri, storage_options=self.storage_options)

    @reads_dataset("self")
    def null_mask(self, column: str) -> np.ndarray:
        """Boolean array: True where `column` is null, by row position."""
        values = self.lance.to_table(columns=[column]).column(column)
        return pc.is_null(values).to_numpy(zero_copy_only=False)


def open_dataset(
    uri: str | Path, version: int | str | None = None, storage_options: dict[str, str] | None = None
) -> MmptDataset:
    """Open an mmpt Lance dataset (local path or object-store URI), optionally at a version or tag."""
    return MmptDataset(open_lance(uri, version, storage_options), str(uri), storage_options)
