"""Resumable embedding writes into the dataset, and exports of embeddings to Parquet, npy or Lance files.

`EmbeddingWriter` stages each chunk durably in a small Lance dataset under
`<dataset>/_mmpt/staging/emb_<run>_<modality>.lance` (each `add` is one atomic append), then `commit`
writes the column into the dataset in a single commit and removes the staging. A crash at any point
leaves the dataset at its previous version (never half a column) and the staged chunks for the resume.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mmpt.embed.columns import (
    as_lance,
    as_matrix,
    check_run_name,
    embedded_ids,
    sql_literal,
    to_matrix,
    to_vector_array,
    vector_type,
    write_embeddings,
)
from mmpt.errors import DataError
from mmpt.store.schema import ID, LABEL, SPLIT, embedding_column

STAGING_DIR = "_mmpt/staging"
EXPORT_FORMATS = ("parquet", "npy", "lance")


def staging_uri(dataset_uri: str, column: str) -> str:
    """Where an unfinished write of `column` keeps its chunks until commit."""
    return f"{dataset_uri.rstrip('/')}/{STAGING_DIR}/{column}.lance"


def _remove_tree(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """Delete a directory tree on the local disk or an object store (missing is fine)."""
    if "://" not in uri:
        shutil.rmtree(uri, ignore_errors=True)
        return
    from mmpt.store.object_store import filesystem

    fs, path = filesystem(uri, storage_options)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


class EmbeddingWriter:
    """Collects one run's embeddings of one modality in chunks, durably, and writes the column in one commit.

    Typical use: skip `done_ids()`, `add()` each batch, `commit()` at the end; after a crash, the same
    calls resume where the staged chunks stop.
    """

    def __init__(
        self,
        dataset: Any,
        run: str,
        modality: str,
        dim: int,
        *,
        retries: int = 5,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.uri = as_lance(dataset, storage_options).uri
        self.run, self.modality, self.dim = check_run_name(run), modality, int(dim)
        self.column = embedding_column(run, modality)
        self.staging = staging_uri(self.uri, self.column)
        self.retries = retries
        self.storage_options = storage_options
        existing = as_lance(self.uri, storage_options).schema
        if self.column in existing.names and existing.field(self.column).type != vector_type(self.dim):
            raise DataError(f"{self.column} already holds {existing.field(self.column).type}, not dim {dim}")

    def _staged(self) -> lance.LanceDataset | None:
        try:
            staged = lance.dataset(self.staging, storage_options=self.storage_options)
        except (ValueError, OSError):
            return None
        if staged.schema.field("vector").type != vector_type(self.dim):
            raise DataError(f"staged rows at {self.staging} have another dimension; discard() them first")
        return staged

    def pending(self) -> int:
        """Rows staged but not yet committed into the dataset."""
        staged = self._staged()
        return staged.count_rows() if staged else 0

    def done_ids(self) -> set[str]:
        """Ids already embedded by this run (committed or staged): skip them when resuming."""
        done = embedded_ids(as_lance(self.uri, self.storage_options), self.run, self.modality)
        staged = self._staged()
        if staged is not None:
            done.update(staged.to_table(columns=[ID])[ID].to_pylist())
        return done

    def prepare(self) -> None:
        """Create the (empty) staging dataset if it is missing, so several processes can append to it at once
        (Ray workers, torchrun ranks): concurrent appends are safe in Lance, concurrent creates are not."""
        if self._staged() is None:
            empty = pa.table({ID: pa.array([], pa.string()), "vector": pa.array([], vector_type(self.dim))})
            try:
                lance.write_dataset(empty, self.staging, mode="create", storage_options=self.storage_options)
            except (OSError, ValueError):
                if self._staged() is None:  # not another process creating it first
                    raise

    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Stage one chunk durably (an atomic append: after a crash it is either all there or absent)."""
        matrix = as_matrix(vectors, n=len(ids), dim=self.dim)
        if not len(ids):
            return
        chunk = pa.table({ID: pa.array(list(ids), pa.string()), "vector": to_vector_array(matrix)})
        mode = "append" if self._staged() is not None else "create"
        lance.write_dataset(chunk, self.staging, mode=mode, storage_options=self.storage_options)

    def commit(self, *, tag: bool = True) -> int:
        """Write the staged rows into `emb_<run>_<modality>` in one commit, tag the version, drop the staging."""
        staged = self._staged()
        if staged is None or staged.count_rows() == 0:
            _remove_tree(self.staging, self.storage_options)
            return as_lance(self.uri, self.storage_options).version
        table = staged.to_table()
        version = write_embeddings(
            self.uri,
            self.run,
            self.modality,
            table[ID].to_pylist(),
            to_matrix(table["vector"], self.dim),
            tag=tag,
            retries=self.retries,
            storage_options=self.storage_options,
            skip_missing=True,  # rows deleted since they were staged
        )
        _remove_tree(self.staging, self.storage_options)
        return version

    def discard(self) -> None:
        """Forget the staged rows without writing them."""
        _remove_tree(self.staging, self.storage_options)


def _export_table(ds: lance.LanceDataset, run: str, modalities: Sequence[str], split: str | None) -> pa.Table:
    """id, label, split and one vector column per modality for rows holding at least one of them."""
    columns = [embedding_column(check_run_name(run), m) for m in modalities]
    missing = [c for c in columns if c not in ds.schema.names]
    if missing:
        raise DataError(f"the dataset has no column {missing[0]}; run `mmpt embed` for that run first")
    condition = "(" + " OR ".join(f"`{c}` IS NOT NULL" for c in columns) + ")"
    if split is not None:
        condition += f" AND {SPLIT} = {sql_literal(split)}"
    return ds.to_table(columns=[ID, LABEL, SPLIT, *columns], filter=condition)


def _write_export(table: pa.Table, run: str, modalities: list[str], to: str, partial: Path) -> None:
    """Write the export table in one of the formats at `partial`."""
    if to == "parquet":
        pq.write_table(table, partial)
    elif to == "lance":
        lance.write_dataset(table, str(partial))
    else:
        partial.mkdir(parents=True)
        for modality in modalities:
            column = table[embedding_column(run, modality)]
            mask = pc.is_valid(column).to_numpy(zero_copy_only=False)
            dim = column.type.list_size
            matrix = np.zeros((len(table), dim), np.float32)
            matrix[mask] = to_matrix(pc.filter(column, mask), dim)
            np.save(partial / f"{modality}.npy", matrix)
            np.save(partial / f"{modality}_mask.npy", mask)
        pq.write_table(table.select([ID, LABEL, SPLIT]), partial / "meta.parquet")
        (partial / "ids.json").write_text(json.dumps(table[ID].to_pylist()))


def export(
    dataset: Any, run: str, modalities: Sequence[str], to: str, path: str | Path, split: str | None = None
) -> Path:
    """Export id + label + split + `emb_<run>_<modality>` columns to a Parquet file, an npy folder or a Lance dataset.

    npy layout: `<path>/<modality>.npy` (float32 [N, D]; rows missing that modality are zeros),
    `<path>/<modality>_mask.npy` (bool [N]), `<path>/meta.parquet` (id, label, split in row order),
    `<path>/ids.json`. Written to `<path>.partial` and renamed, so a failed export leaves nothing behind.
    """
    if to not in EXPORT_FORMATS:
        raise DataError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {to!r}")
    if not modalities:
        raise DataError("name at least one modality to export")
    table = _export_table(as_lance(dataset), run, list(modalities), split)
    out = Path(path)
    partial = out.with_name(out.name + ".partial")
    _remove_tree(str(partial))
    try:
        _write_export(table, run, list(modalities), to, partial)
    except BaseException:
        _remove_tree(str(partial))
        raise
    if out.is_dir():
        _remove_tree(str(out))
    elif out.exists():
        out.unlink()
    partial.rename(out)
    return out
