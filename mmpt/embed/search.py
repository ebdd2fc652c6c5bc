"""Nearest-neighbour search over an embedding column: exact numpy search below a size threshold, a Lance
vector index above it (`ensure_index`). Scores are cosine similarities.

A search covers only the rows holding a vector: rows appended since the run embedded the dataset are not
searched, and every result says how many such rows there are (`SearchResult.coverage` / `.note`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmpt.embed.columns import as_lance, column_dim, read_vectors, sql_literal, vector_filter, with_retry
from mmpt.errors import DataError
from mmpt.store.schema import ID, LABEL, SPLIT, TEXT

# Below this many vectors exact search is fast enough and no index is built (an index build takes ~1 min).
INDEX_THRESHOLD = 50_000
# Chosen with benchmarks/search.py on 100k x 512 on 2 cores: IVF_PQ answers in ~6-8 ms at recall@10
# >= 0.95 on both of its data sets; IVF_HNSW_SQ builds ~4x faster but queries slower at equal recall.
INDEX_TYPE = "IVF_PQ"
QUERY_PARAMS: dict[str, dict[str, int]] = {
    "IVF_PQ": {"nprobes": 64, "refine_factor": 10},
    "IVF_HNSW_SQ": {"nprobes": 16, "ef": 100, "refine_factor": 10},
}
HIT_COLUMNS = (ID, TEXT, LABEL, SPLIT)


@dataclass(frozen=True)
class Hit:
    """One search result: the row's id, cosine similarity to the query, and what a UI shows about it."""

    id: str
    score: float
    text: str | None
    label: str | None
    split: str | None

    def to_dict(self) -> dict[str, Any]:
        """The hit as a JSON-ready dict (`mmpt search --json`)."""
        return asdict(self)


@dataclass(frozen=True)
class Coverage:
    """Rows a search over `column` covered (`embedded`) and rows it could not, holding the modality but no
    vector yet (`missing`: appended after the run embedded the dataset, or undecodable)."""

    column: str
    embedded: int
    missing: int

    def note(self, run: str | None = None) -> str | None:
        """The one-line notice when rows were left out (None when every row is covered); `run` is what to pass
        to `mmpt embed --run` (default: the run name in the column)."""
        if not self.missing:
            return None
        name, _ = split_column(self.column)
        return (
            f"{self.missing:,} rows without embeddings for run {name} were not searched; "
            f"`mmpt embed --run {run or name}` to add them"
        )


class SearchResult(list[Hit]):
    """The hits of one query, best first (a list), with the search's `coverage` and its `note`; `run` is the
    run folder the note tells `mmpt embed --run` (default: the run name in the column)."""

    def __init__(
        self, hits: Iterable[Hit] = (), coverage: Coverage | None = None, run: str | None = None
    ) -> None:
        super().__init__(hits)
        self.coverage = coverage
        self.run = run

    @property
    def note(self) -> str | None:
        """One line when the search left rows out (see `Coverage.note`), else None."""
        return self.coverage.note(self.run) if self.coverage is not None else None


def split_column(column: str) -> tuple[str, str]:
    """`emb_<run>_<modality>` -> (run, modality)."""
    stem = column[len("emb_") :] if column.startswith("emb_") else column
    run, _, modality = stem.rpartition("_")
    return run or stem, modality


_PRESENCE = {TEXT: TEXT, "image": "image_sha256", "audio": "audio_sha256"}


def coverage(dataset: Any, column: str, condition: str | None = None) -> Coverage:
    """How many rows (within `condition`, an SQL filter) hold a vector in `column`, and how many hold its
    modality but no vector."""
    ds = as_lance(dataset)
    key = (ds.uri, ds.version, column, condition)
    cached = _coverage_cache.get(key)
    if cached is not None:
        return cached
    where = f" AND ({condition})" if condition else ""
    embedded = ds.count_rows(filter=f"`{column}` IS NOT NULL{where}")
    presence = _PRESENCE.get(split_column(column)[1])
    missing = 0
    if presence is not None and presence in ds.schema.names:
        missing = ds.count_rows(filter=f"`{presence}` IS NOT NULL AND `{column}` IS NULL{where}")
    result = Coverage(column, embedded, missing)
    if len(_coverage_cache) > 64:
        _coverage_cache.clear()
    _coverage_cache[key] = result
    return result


_coverage_cache: dict[tuple[str, int, str, str | None], Coverage] = {}


class IndexParams(TypedDict, total=False):
    """Keyword arguments of `LanceDataset.create_index` that `index_params` chooses."""

    num_partitions: int
    num_sub_vectors: int


def index_params(rows: int, dim: int, index_type: str = INDEX_TYPE) -> IndexParams:
    """Build parameters for an index over `rows` vectors of size `dim` (partitions grow with sqrt(rows))."""
    partitions = int(min(max(16, round(np.sqrt(rows) * 0.8)), 1024))
    if index_type == "IVF_PQ":
        sub_vectors = max(d for d in (64, 32, 16, 8, 4, 2, 1) if dim % d == 0 and d <= max(1, dim // 8))
        return {"num_partitions": partitions, "num_sub_vectors": sub_vectors}
    if index_type == "IVF_HNSW_SQ":
        return {"num_partitions": max(1, partitions // 4)}
    raise DataError(f"unsupported index type {index_type!r}; use IVF_PQ or IVF_HNSW_SQ")


def vector_index(ds: lance.LanceDataset, column: str) -> dict[str, Any] | None:
    """The vector index over `column`, if the dataset has one."""
    for index in ds.describe_indices():
        if list(index.field_names) == [column]:
            return {"name": index.name, "type": index.index_type}
    return None


def ensure_index(
    dataset: Any,
    column: str,
    threshold: int = INDEX_THRESHOLD,
    *,
    index_type: str = INDEX_TYPE,
    replace: bool = False,
    retries: int = 5,
) -> str | None:
    """Build (or bring up to date) a cosine vector index on `column` when it holds >= `threshold` vectors.

    Returns the index name, or None when the column is small enough for exact search.
    """
    ds = as_lance(dataset)
    options = getattr(dataset, "storage_options", None)  # an MmptDataset's, for s3:// without AWS_* settings
    dim = column_dim(ds, column)
    if dim is None:
        raise DataError(f"the dataset has no column {column}")
    rows = ds.count_rows(filter=f"`{column}` IS NOT NULL")
    if rows < threshold:
        return None
    existing = vector_index(ds, column)
    name = f"{column}_idx"
    if existing and not replace:
        stats = ds.stats.index_stats(existing["name"])
        if stats.get("num_unindexed_rows", 0) > 0.1 * max(1, stats.get("num_indexed_rows", 0)):
            with_retry(
                lambda: lance.dataset(ds.uri, storage_options=options).optimize.optimize_indices(),
                f"index {name}",
                ds.uri,
                retries,
            )
        return existing["name"]
    params = index_params(rows, dim, index_type)

    def build() -> str:
        lance.dataset(ds.uri, storage_options=options).create_index(
            column, index_type, name=name, metric="cosine", replace=True, **params
        )
        return name

    return with_retry(build, f"index {name}", ds.uri, retries)


def _as_queries(queries: Any, dim: int) -> np.ndarray:
    """Validate query vectors ([D] or [Q, D]) and L2-normalise them."""
    if queries is None:
        raise DataError("empty query: give at least one query vector")
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] == 0:
        raise DataError(f"empty query: expected vectors of shape [Q, {dim}], got {q.shape}")
    if q.shape[1] != dim:
        raise DataError(f"query vectors have dimension {q.shape[1]}, the column holds {dim}")
    if not np.isfinite(q).all():
        raise DataError("query vectors contain NaN or infinite values")
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError("a query vector is all zeros")
    return q / norms


def _conditions(split: str | None, label: str | None, where: str | None) -> str | None:
    parts = [f"{name} = {sql_literal(v)}" for name, v in ((SPLIT, split), (LABEL, label)) if v is not None]
    if where:
        parts.append(f"({where})")
    return " AND ".join(parts) or None


class _ExactCache:
    """The last column loaded for exact search (rows + unit vectors), keyed by dataset URI, version and column."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: tuple[pa.Table, np.ndarray] | None = None

    def get(self, ds: lance.LanceDataset, column: str) -> tuple[pa.Table, np.ndarray]:
        key = (ds.uri, ds.version, column)
        with self._lock:
            if self._key != key:
                rows, matrix = read_vectors(ds, column, extra=HIT_COLUMNS[1:])
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                self._key, self._value = key, (rows, matrix / np.maximum(norms, 1e-12))
            assert self._value is not None
            return self._value


_exact_cache = _ExactCache()


def _hits(rows: pa.Table, order: Iterable[int], scores: Iterable[float]) -> list[Hit]:
    ids, texts, labels, splits = (rows[c] for c in HIT_COLUMNS)
    return [
        Hit(ids[i].as_py(), float(s), texts[i].as_py(), labels[i].as_py(), splits[i].as_py())
        for i, s in zip(order, scores, strict=True)
    ]


def _check_k(k: int, available: int) -> None:
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    if k > available:
        raise DataError(f"k={k} is larger than the {available} rows searched")


def _exact(
    ds: lance.LanceDataset, column: str, q: np.ndarray, k: int, condition: str | None, exclude: set[str]
) -> list[list[Hit]]:
    rows, matrix = _exact_cache.get(ds, column)
    keep = np.ones(len(rows), bool)
    if condition:
        wanted = ds.to_table(columns=[ID], filter=condition)[ID]
        keep &= pc.is_in(rows[ID], value_set=wanted).to_numpy(zero_copy_only=False)
    if exclude:
        keep &= ~pc.is_in(rows[ID], value_set=pa.array(list(exclude), pa.string())).to_numpy(
            zero_copy_only=False
        )
    available = int(keep.sum())
    _check_k(k, available)
    scores = q @ matrix.T  # scoring every row and masking is cheaper than copying the kept rows
    if available < len(rows):
        scores[:, ~keep] = -np.inf
    results = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
        top = top[np.argsort(-row[top], kind="stable")]
        results.append(_hits(rows, top, row[top]))
    return results


def _indexed(
    ds: lance.LanceDataset,
    column: str,
    q: np.ndarray,
    k: int,
    condition: str | None,
    exclude: set[str],
    params: dict[str, int],
) -> list[list[Hit]]:
    _check_k(k, ds.count_rows())
    drop = pa.array(list(exclude), pa.string())
    results = []
    for vector in q:
        nearest = {"column": column, "q": vector, "k": k + len(exclude), "metric": "cosine", **params}
        table = ds.to_table(
            columns=[*HIT_COLUMNS, "_distance"], nearest=nearest, filter=condition, prefilter=True
        )
        if exclude:
            table = table.filter(pc.invert(pc.is_in(table[ID], value_set=drop)))
        if len(table) < k:  # fewer rows pass the filter than asked for: say how many (counted only now)
            matched = ds.to_table(columns=[ID], filter=vector_filter(column, where=condition))[ID]
            _check_k(k, len(matched) - (pc.sum(pc.is_in(matched, value_set=drop)).as_py() if exclude else 0))
        table = table.slice(0, k)
        results.append(_hits(table, range(len(table)), (1.0 - d for d in table["_distance"].to_pylist())))
    return results


def search(
    dataset: Any,
    column: str,
    queries: Any,
    k: int = 10,
    *,
    split: str | None = None,
    label: str | None = None,
    filter: str | None = None,
    exclude_ids: Iterable[str] = (),
    exact: bool | None = None,
    query_params: dict[str, int] | None = None,
) -> list[SearchResult]:
    """The k nearest rows (cosine) to each query vector, best first, optionally within a split / label / SQL filter.

    Uses the column's vector index when it has one (see `ensure_index`), exact search otherwise;
    `exact=True` forces exact search. `exclude_ids` drops rows (e.g. the query itself) from the results.
    Each result carries the search's `coverage`: rows holding the modality but no vector are not searched.
    """
    ds = as_lance(dataset)
    dim = column_dim(ds, column)
    if dim is None:
        raise DataError(f"the dataset has no column {column}; write it first (mmpt embed)")
    q = _as_queries(queries, dim)
    condition = _conditions(split, label, filter)
    exclude = set(exclude_ids)
    index = None if exact else vector_index(ds, column)
    if index is None:
        found = _exact(ds, column, q, k, condition, exclude)
    else:
        params = {**QUERY_PARAMS.get(index["type"], {}), **(query_params or {})}
        found = _indexed(ds, column, q, k, condition, exclude, params)
    covered = coverage(ds, column, condition)
    return [SearchResult(hits, covered) for hits in found]
