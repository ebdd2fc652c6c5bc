"""2-D layouts of the explorer's points: fast PCA in memory, UMAP / t-SNE as background jobs, cached as columns.

Several modalities are projected *jointly*: their embeddings are stacked and fitted once, so an image, its
caption and its sound land in one shared 2-D space (the modality gap shows as it is). Joint UMAP / t-SNE
layouts are cached per modality in `proj_<run>_<modality>_<method>_joint` columns, whose field metadata
records the embedding columns, their data-file fingerprints and the parameters (including the modalities
fitted together); a cache is used only while all of these still match. A single modality uses the columns
`mmpt project` writes (`proj_<run>_<modality>_<method>`, `mmpt.embed.projections`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError
from typing import Any

import numpy as np

from mmpt.embed.columns import (
    as_lance,
    column_fingerprint,
    replace_column,
    to_matrix,
    to_vector_array,
)
from mmpt.embed.projections import projection_column_name
from mmpt.errors import DataError
from mmpt.explore.vectors import PointVectors
from mmpt.store.schema import ID, embedding_column

log = logging.getLogger(__name__)

PCA_SAMPLE = 20_000  # PCA axes are fitted on at most this many points (then every point is projected)
Progress = Callable[[float, str], None]


def fast_pca(
    parts: np.ndarray | Sequence[tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
    sample: int = PCA_SAMPLE,
    iterations: int = 6,
) -> np.ndarray:
    """float32 [N, 2] PCA coordinates of the points `matrix[rows]` of each (matrix, rows) part, in order.

    The axes come from a seeded sample of at most `sample` points by subspace iteration (signs made
    deterministic, as sklearn's svd_flip); then every point is projected. On 300k x 512 this takes ~0.2 s
    on 2 cores where sklearn's randomized PCA takes several seconds; the two leading axes of a 20k-point
    sample match those of all points up to sampling noise. A plain [N, D] array is one part.
    """
    if isinstance(parts, np.ndarray):
        parts = [(parts, np.arange(len(parts)))]
    sizes = np.array([len(rows) for _, rows in parts])
    n, dim = int(sizes.sum()), parts[0][0].shape[1]
    if n < 3:
        raise DataError(f"a projection needs at least 3 points, got {n}")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(n, sample, replace=False)) if n > sample else np.arange(n)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    fit = np.concatenate(
        [
            matrix[rows[picked[(picked >= lo) & (picked < hi)] - lo]]
            for (matrix, rows), lo, hi in zip(parts, offsets[:-1], offsets[1:], strict=True)
        ]
    ).astype(np.float32, copy=False)
    mean = fit.mean(axis=0)
    fit = fit - mean
    basis = rng.standard_normal((dim, min(dim, 8))).astype(np.float32)
    for _ in range(iterations):
        basis, _ = np.linalg.qr(fit.T @ (fit @ basis))
    _, _, vt = np.linalg.svd(fit @ basis, full_matrices=False)
    axes = (basis @ vt.T)[:, :2]
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])  # largest loading positive (as svd_flip)
    axes = np.ascontiguousarray(axes * np.where(signs == 0, 1, signs), dtype=np.float32)
    shift = mean @ axes
    coords = [(matrix @ axes)[rows] - shift for matrix, rows in parts]
    return np.ascontiguousarray(np.concatenate(coords), dtype=np.float32)


def joint_column(run: str, modality: str, method: str) -> str:
    """Column caching a joint layout's coordinates for one modality: `proj_<run>_<modality>_<method>_joint`."""
    return projection_column_name(run, modality, f"{method}_joint")


def joint_metadata(
    sources: dict[str, str], fingerprints: dict[str, str | None], params: dict[str, Any]
) -> dict[str, str]:
    """Field metadata of a joint layout column: what it was computed from, so a stale cache is never used."""
    return {
        "mmpt.kind": "projection",
        "mmpt.source": ",".join(sources[m] for m in sorted(sources)),
        "mmpt.fingerprint": ",".join(fingerprints[m] or "" for m in sorted(sources)),
        "mmpt.params": json.dumps(params, sort_keys=True),
    }


def read_joint_cache(
    uri: str, columns: dict[str, str], metadata: dict[str, str]
) -> dict[str, tuple[list[str], np.ndarray]] | None:
    """{modality: (ids, coordinates)} from the newest dataset version, or None unless every column matches."""
    ds = as_lance(uri)
    names = ds.schema.names
    for column in columns.values():
        if column not in names:
            return None
        field = ds.schema.field(column)
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        if any(meta.get(key) != value for key, value in metadata.items()):
            return None
    out = {}
    for modality, column in columns.items():
        table = ds.to_table(columns=[ID, column], filter=f"`{column}` IS NOT NULL")
        out[modality] = (table[ID].to_pylist(), to_matrix(table[column], 2))
    return out


def write_joint_cache(
    uri: str, columns: dict[str, str], ids: dict[str, list[str]], coords: dict[str, np.ndarray], meta: dict
) -> None:
    """Write each modality's coordinates into its joint column (one commit per column, blobs untouched)."""
    for modality, column in columns.items():
        values = to_vector_array(np.ascontiguousarray(coords[modality], dtype=np.float32))
        replace_column(uri, column, ids[modality], values, metadata=meta)


class LayoutJob:
    """A layout computed in a background thread: `progress` (fraction, message), `done()`, `result()`, `cancel()`.

    `work(report, cancelled)` returns the coordinates; `on_done(coords)` runs in the worker thread when the
    job finished and was not cancelled. `cancel()` stops the job from writing a cache or delivering its
    result; a fit already running (UMAP, t-SNE) cannot be interrupted and finishes in the background.
    With `background=False` the work runs in the calling thread before the constructor returns.
    """

    def __init__(
        self,
        method: str,
        work: Callable[[Progress, Callable[[], bool]], np.ndarray],
        on_done: Callable[[np.ndarray], None],
        on_progress: Progress | None = None,
        *,
        background: bool = True,
    ) -> None:
        self.method = method
        self.progress: tuple[float, str] = (0.0, "queued")
        self.started = time.time()
        self.error: BaseException | None = None
        self._on_progress = on_progress
        self._cancel = threading.Event()
        self._result: np.ndarray | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, args=(work, on_done), daemon=True, name=f"mmpt-layout-{method}"
            )
            self._thread.start()
        else:
            self._run(work, on_done)

    def __repr__(self) -> str:
        fraction, message = self.progress
        return f"LayoutJob({self.method!r}, {fraction:.0%}, {message!r})"

    def _report(self, fraction: float, message: str) -> None:
        self.progress = (float(fraction), message)
        if self._on_progress is not None:
            self._on_progress(float(fraction), message)

    def _run(
        self,
        work: Callable[[Progress, Callable[[], bool]], np.ndarray],
        on_done: Callable[[np.ndarray], None],
    ) -> None:
        try:
            coords = work(self._report, self._cancel.is_set)
            if self._cancel.is_set():
                raise CancelledError(f"the {self.method} layout was cancelled")
            self._result = coords
            self._report(1.0, f"{self.method}: done")
            on_done(coords)
        except BaseException as exc:  # handed to the caller by result()
            self.error = exc
            self._report(self.progress[0], f"failed: {exc}")

    def done(self) -> bool:
        """True once the job finished, failed or was cancelled."""
        return self._thread is None or not self._thread.is_alive()

    def cancel(self) -> None:
        """Ask the job not to write a cache nor deliver its coordinates; `result()` then raises CancelledError."""
        self._cancel.set()

    def result(self, timeout: float | None = None) -> np.ndarray:
        """The float32 [points, 2] coordinates (TimeoutError after `timeout` seconds); re-raise the job's error."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the {self.method} layout is still running after {timeout} s")
        if self.error is not None:
            raise self.error
        assert self._result is not None
        return self._result


def fingerprints(uri_or_ds: Any, sources: dict[str, str]) -> dict[str, str | None]:
    """Data-file fingerprint of each embedding column (changes whenever the column is rewritten)."""
    ds = as_lance(uri_or_ds)
    return {m: column_fingerprint(ds, column) for m, column in sources.items()}


class Layouts:
    """The explorer's 2-D layouts: coordinates per method (the latest computed), their KD-trees, their jobs.

    `vec` holds the points; `ids` / `rows_of` map row ids to row positions; `on_ready(method)` runs when a
    layout's coordinates were stored (in the worker thread for background jobs).
    """

    def __init__(
        self,
        vec: PointVectors,
        ids: np.ndarray,
        rows_of: Callable[[Sequence[str]], np.ndarray],
        pinned: Any,
        name: str,
        on_ready: Callable[[str], None],
    ) -> None:
        self.vec, self.ids, self.rows_of, self.pinned, self.name = vec, ids, rows_of, pinned, name
        self.uri = pinned.uri
        self.on_ready = on_ready
        self._coords: dict[str, np.ndarray] = {}
        self._trees: dict[str, tuple[Any, np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, method: str) -> np.ndarray | None:
        """The stored coordinates of a layout, or None if it was not computed yet."""
        with self._lock:
            return self._coords.get(method)

    def project(
        self, method: str, background: bool, seed: int, on_progress: Progress | None, params: dict[str, Any]
    ) -> LayoutJob:
        """A job computing (or reading from cache) one layout; see `Explorer.project`."""
        from mmpt.embed.projections import METHODS

        if method not in METHODS:
            raise DataError(f"unknown projection method {method!r}; use one of {', '.join(METHODS)}")
        ready = self.get(method)
        if ready is not None and not params and seed == 0:
            return LayoutJob(method, lambda report, cancelled: ready, lambda coords: None, background=False)

        def on_done(coords: np.ndarray) -> None:
            with self._lock:
                self._coords[method] = coords
                self._trees.pop(method, None)
            self.on_ready(method)

        work = self._pca(seed) if method == "pca" else self._fit(method, seed, params)
        return LayoutJob(method, work, on_done, on_progress, background=background and method != "pca")

    def nearest(self, method: str, x: float, y: float, radius: float | None) -> int | None:
        """The point nearest to (x, y) in a computed layout (None beyond `radius`), by a cached KD-tree."""
        with self._lock:
            tree = self._trees.get(method)
            coords = self._coords.get(method)
        if tree is None:
            from scipy.spatial import cKDTree

            if coords is None:
                raise DataError(f"the {method} layout is not computed yet; call points({method!r}) first")
            finite = np.flatnonzero(
                np.isfinite(coords).all(axis=1)
            )  # points without coordinates are never hit
            tree = (cKDTree(coords[finite]), finite)
            with self._lock:
                self._trees[method] = tree
        kdtree, finite = tree
        if not len(finite):
            return None
        distance, index = kdtree.query((x, y), distance_upper_bound=np.inf if radius is None else radius)
        return int(finite[index]) if np.isfinite(distance) else None

    def scatter(self, parts: Mapping[str, tuple[Sequence[str], np.ndarray]]) -> np.ndarray:
        """Per-modality (ids, values) -> float32 [points, 2] (NaN for points the values do not cover)."""
        coords = np.full((len(self.vec), 2), np.nan, np.float32)
        for m, (ids, values) in parts.items():
            points = self.vec.points_of(m, self.rows_of(ids))
            keep = points >= 0
            coords[points[keep]] = values[keep]
        return coords

    def _pca(self, seed: int) -> Callable:
        def work(report: Progress, cancelled: Callable[[], bool]) -> np.ndarray:
            if len(self.vec.modalities) == 1:  # reuse `mmpt project`'s cache of this modality
                from mmpt.embed.projections import cached_projection

                m = self.vec.modalities[0]
                cached = cached_projection(self.pinned, self.name, m, "pca", seed=seed)
                if cached is not None:
                    return self.scatter({m: (cached.ids, cached.values)})
            report(0.1, f"pca on {len(self.vec)} points")
            return fast_pca(self.vec.parts(), seed=seed)

        return work

    def _fit(self, method: str, seed: int, params: dict[str, Any]) -> Callable:
        """UMAP / t-SNE: one modality through `mmpt.embed.projections` (shared with `mmpt project`), several jointly."""
        modalities = self.vec.modalities
        if len(modalities) == 1:
            return self._fit_single(modalities[0], method, seed, params)
        sources = {m: embedding_column(self.name, m) for m in modalities}
        columns = {m: joint_column(self.name, m, method) for m in modalities}
        settings = {"method": method, "seed": seed, "joint": list(modalities), **params}
        meta = joint_metadata(sources, fingerprints(self.pinned, sources), settings)

        def work(report: Progress, cancelled: Callable[[], bool]) -> np.ndarray:
            from mmpt.embed.projections import compute_projection

            report(0.0, "checking the cache")
            cached = read_joint_cache(self.uri, columns, meta)
            if cached is not None:
                coords = self.scatter(cached)
                if not np.isnan(coords).any():
                    report(1.0, f"{method}: cached")
                    return coords
            report(0.05, f"{method} on {len(self.vec)} points")
            coords = compute_projection(self.vec.stacked(), method, seed=seed, **params)
            if cancelled():
                return coords
            report(0.9, "writing the cache")
            blocks = {m: slice(*self.vec.blocks[m]) for m in modalities}
            ids = {m: self.ids[self.vec.point_row[blocks[m]]].tolist() for m in modalities}
            try:
                write_joint_cache(self.uri, columns, ids, {m: coords[blocks[m]] for m in modalities}, meta)
            except Exception as exc:  # the layout is still good; only its cache is lost
                log.warning("could not cache the %s layout in %s: %s", method, self.uri, exc)
            return coords

        return work

    def _fit_single(self, m: str, method: str, seed: int, params: dict[str, Any]) -> Callable:
        from mmpt.embed.projections import ProjectionJob

        def work(report: Progress, cancelled: Callable[[], bool]) -> np.ndarray:
            job = ProjectionJob(self.uri, self.name, m, method, seed=seed, on_progress=report, **params)
            while True:  # poll, so that a cancel reaches the inner job (it then writes no column)
                if cancelled():
                    job.cancel()
                try:
                    projection = job.result(timeout=0.2)
                    break
                except TimeoutError:
                    continue
            return self.scatter({m: (projection.ids, projection.values)})

        return work
