"""2-D projections (PCA, UMAP, t-SNE) and k-means clusters of a run's embeddings, cached as dataset columns.

Columns (FixedSizeList<float32, 2> and int32, null for rows without that embedding):
`proj_<run>_<modality>_<method>` and `cluster_<run>_<modality>_k<k>`. Each carries field metadata
`mmpt.source` (the embedding column), `mmpt.fingerprint` (that column's data files when it was read)
and `mmpt.params`; a cached column is reused only while all three still match. PCA takes seconds; UMAP
and t-SNE take tens of seconds to minutes, so UIs show PCA at once and run the others as a
`ProjectionJob` in a background thread (measured: UMAP in a thread keeps the GIL free enough for a UI).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

import lance
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from mmpt.embed.columns import (
    as_lance,
    check_run_name,
    column_fingerprint,
    read_vectors,
    replace_column,
    to_matrix,
    to_vector_array,
)
from mmpt.errors import DataError
from mmpt.store.schema import ID, embedding_column, projection_column

METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
Progress = Callable[[float, str], None]


def projection_column_name(run: str, modality: str, method: str) -> str:
    """Column caching a run's 2-D projection of one modality: `proj_<run>_<modality>_<method>`."""
    return projection_column(check_run_name(run), f"{modality}_{method}")


def cluster_column(run: str, modality: str, k: int) -> str:
    """Column caching k-means cluster labels of a run's embeddings of one modality: `cluster_<run>_<modality>_k<k>`."""
    return f"cluster_{check_run_name(run)}_{modality}_k{k}"


@dataclass(frozen=True)
class Projection:
    """2-D coordinates (or cluster labels) for the rows holding an embedding, and where they are cached."""

    ids: list[str]
    values: np.ndarray
    column: str
    cached: bool


def compute_projection(vectors: np.ndarray, method: str, *, seed: int = 0, **params: Any) -> np.ndarray:
    """Project [N, D] vectors to float32 [N, 2] with PCA, UMAP (cosine) or t-SNE (cosine)."""
    n = len(vectors)
    if n < 3:
        raise DataError(f"a projection needs at least 3 embedded rows, got {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2, random_state=seed, **params).fit_transform(vectors)
    elif method == "umap":
        import umap  # slow to import (numba); only when asked for

        options = {
            "n_neighbors": min(15, n - 1),
            "metric": "cosine",
            "random_state": seed,
            "n_jobs": 1,
            **params,
        }
        coords = umap.UMAP(n_components=2, **options).fit_transform(vectors)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        options = {"perplexity": min(30.0, (n - 1) / 3), "metric": "cosine", "init": "pca", **params}
        coords = TSNE(n_components=2, random_state=seed, **options).fit_transform(vectors)
    else:
        raise DataError(f"unknown projection method {method!r}; use one of {', '.join(METHODS)}")
    return np.ascontiguousarray(coords, dtype=np.float32)


def compute_clusters(vectors: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """k-means labels (int32 [N]) of L2-normalised vectors; mini-batch k-means above 50k rows."""
    if not 1 <= k <= len(vectors):
        raise DataError(f"k={k} clusters needs between 1 and {len(vectors)} (the embedded rows)")
    from sklearn.cluster import KMeans, MiniBatchKMeans

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    kind = MiniBatchKMeans if len(vectors) > 50_000 else KMeans
    return kind(n_clusters=k, n_init=3, random_state=seed).fit_predict(unit).astype(np.int32)


def _metadata(source: str, fingerprint: str | None, params: dict[str, Any]) -> dict[str, str]:
    return {
        "mmpt.kind": "projection",
        "mmpt.source": source,
        "mmpt.fingerprint": fingerprint or "",
        "mmpt.params": json.dumps(params, sort_keys=True),
    }


def _cached(ds: lance.LanceDataset, column: str, source: str, params: dict[str, Any]) -> Projection | None:
    """The cached column's values if it was computed from the current embeddings with the same params."""
    if column not in ds.schema.names:
        return None
    meta = {k.decode(): v.decode() for k, v in (ds.schema.field(column).metadata or {}).items()}
    wanted = _metadata(source, column_fingerprint(ds, source), params)
    if any(meta.get(key) != value for key, value in wanted.items()):
        return None
    table = ds.to_table(columns=[ID, column], filter=f"`{column}` IS NOT NULL")
    dtype = ds.schema.field(column).type
    if pa.types.is_fixed_size_list(dtype):
        values = to_matrix(table[column], dtype.list_size)
    else:
        values = table[column].to_numpy(zero_copy_only=False).astype(np.int32)
    return Projection(table[ID].to_pylist(), values, column, cached=True)


def _run(
    dataset: Any,
    source: str,
    column: str,
    params: dict[str, Any],
    fit: Callable[[np.ndarray], np.ndarray],
    cache: bool,
    progress: Progress,
    cancelled: Callable[[], bool] = lambda: False,
) -> Projection:
    """Shared flow: reuse the cache, else read embeddings, fit, and write the column (one replace)."""
    ds = as_lance(as_lance(dataset).uri)  # the newest version: the cache is checked and written there
    if source not in ds.schema.names:
        raise DataError(f"the dataset has no column {source}; write embeddings first (mmpt embed)")
    if cache and (hit := _cached(ds, column, source, params)) is not None:
        progress(1.0, f"{column}: cached")
        return hit
    progress(0.0, f"reading {source}")
    fingerprint = column_fingerprint(ds, source)
    rows, vectors = read_vectors(ds, source)
    progress(0.1, f"{params.get('method', 'kmeans')} on {len(vectors)} rows")
    values = fit(vectors)
    if cancelled():
        raise CancelledError(f"{column} was cancelled")
    progress(0.9, f"writing {column}")
    ids = rows[ID].to_pylist()
    array = to_vector_array(values) if values.ndim == 2 else pa.array(values, pa.int32())
    if cache:
        replace_column(ds.uri, column, ids, array, metadata=_metadata(source, fingerprint, params))
    progress(1.0, f"{column}: done")
    return Projection(ids, values, column, cached=False)


def _bar_progress(label: str) -> tuple[Progress, Callable[[], None]]:
    """A tqdm bar over the stages of a foreground projection."""
    bar = tqdm(total=100, desc=label, unit="%", leave=False)

    def update(fraction: float, message: str) -> None:
        bar.set_postfix_str(message)
        bar.update(int(fraction * 100) - bar.n)

    return update, bar.close


def project(
    dataset: Any,
    run: str,
    modality: str,
    method: str = "pca",
    *,
    cache: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
    **params: Any,
) -> Projection:
    """2-D projection of a run's embeddings, from the cached column when still valid, else computed and cached."""
    if method not in METHODS:
        raise DataError(f"unknown projection method {method!r}; use one of {', '.join(METHODS)}")
    source, column = (
        embedding_column(check_run_name(run), modality),
        projection_column_name(run, modality, method),
    )
    close = None
    if progress is None:
        progress, close = _bar_progress(column)
    try:
        return _run(
            dataset,
            source,
            column,
            {"method": method, "seed": seed, **params},
            lambda x: compute_projection(x, method, seed=seed, **params),
            cache,
            progress,
        )
    finally:
        if close:
            close()


def cached_projection(
    dataset: Any, run: str, modality: str, method: str, *, seed: int = 0, **params: Any
) -> Projection | None:
    """The cached projection if it is still valid, else None (never computes: cheap for UIs to poll)."""
    source, column = (
        embedding_column(check_run_name(run), modality),
        projection_column_name(run, modality, method),
    )
    ds = as_lance(dataset)
    if source not in ds.schema.names:
        return None
    return _cached(ds, column, source, {"method": method, "seed": seed, **params})


def clusters(
    dataset: Any, run: str, modality: str, k: int = 8, *, cache: bool = True, seed: int = 0
) -> Projection:
    """k-means cluster labels (int32) of a run's embeddings, for colouring points; cached like projections."""
    source, column = embedding_column(check_run_name(run), modality), cluster_column(run, modality, k)
    return _run(
        dataset,
        source,
        column,
        {"method": "kmeans", "k": k, "seed": seed},
        lambda x: compute_clusters(x, k, seed=seed),
        cache,
        lambda fraction, message: None,
    )


class ProjectionJob:
    """A projection computed in a background thread; poll `done()`/`progress`, or block on `result()`.

    `cancel()` stops the job from writing its column (the fit itself cannot be interrupted).
    """

    def __init__(
        self,
        dataset: Any,
        run: str,
        modality: str,
        method: str = "umap",
        *,
        cache: bool = True,
        seed: int = 0,
        on_progress: Progress | None = None,
        **params: Any,
    ) -> None:
        if method not in METHODS:
            raise DataError(f"unknown projection method {method!r}; use one of {', '.join(METHODS)}")
        self.column = projection_column_name(run, modality, method)
        source = embedding_column(run, modality)
        self.progress: tuple[float, str] = (0.0, "queued")
        self.started = time.time()
        self._on_progress = on_progress
        self._cancel = threading.Event()
        self._result: Projection | None = None
        self.error: BaseException | None = None
        uri = as_lance(dataset).uri
        args = (uri, source, self.column, {"method": method, "seed": seed, **params})
        fit = lambda x: compute_projection(x, method, seed=seed, **params)  # noqa: E731
        self._thread = threading.Thread(
            target=self._work, args=(*args, fit, cache), daemon=True, name=self.column
        )
        self._thread.start()

    def _report(self, fraction: float, message: str) -> None:
        self.progress = (fraction, message)
        if self._on_progress is not None:
            self._on_progress(fraction, message)

    def _work(
        self,
        uri: str,
        source: str,
        column: str,
        params: dict[str, Any],
        fit: Callable[[np.ndarray], np.ndarray],
        cache: bool,
    ) -> None:
        try:
            self._result = _run(uri, source, column, params, fit, cache, self._report, self._cancel.is_set)
        except BaseException as exc:  # handed to the caller by result()
            self.error = exc
            self._report(self.progress[0], f"failed: {exc}")

    def done(self) -> bool:
        """True once the job finished, failed or was cancelled."""
        return not self._thread.is_alive()

    def cancel(self) -> None:
        """Ask the job not to write its result; `result()` then raises CancelledError."""
        self._cancel.set()

    def result(self, timeout: float | None = None) -> Projection:
        """Wait for the projection (TimeoutError after `timeout` seconds); re-raise the job's error."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.column} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        assert self._result is not None
        return self._result


def start_projection(
    dataset: Any,
    run: str,
    modality: str,
    method: str = "umap",
    *,
    on_progress: Progress | None = None,
    **kwargs: Any,
) -> ProjectionJob:
    """Start a background projection (see `ProjectionJob`); returns at once."""
    return ProjectionJob(dataset, run, modality, method, on_progress=on_progress, **kwargs)
