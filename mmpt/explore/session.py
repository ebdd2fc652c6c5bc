"""The headless explorer session: a run's embeddings of a dataset as points that UIs draw, hover and select.

One point per (row, modality) embedding. The notebook panel (jupyter-scatter) and the desktop app are views
of an `Explorer`: they draw `points()`, ask `hover()` / `item()` on mouse moves, mirror `selection` both
ways through `on_selection`, and swap coordinates when `on_points` says a background layout finished.
Everything here is numpy / pandas; no Qt and no widgets.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lance
import numpy as np
import pandas as pd
import pyarrow as pa

from mmpt.embed.columns import check_run_name, column_fingerprint
from mmpt.errors import ConfigError, DataError
from mmpt.explore import export, layout
from mmpt.explore.colours import category_colours
from mmpt.explore.events import Signal
from mmpt.explore.media import Item, build_item
from mmpt.explore.vectors import PointVectors
from mmpt.store.schema import ID, LABEL, MODALITIES, SPLIT, TEXT, embedding_column

if TYPE_CHECKING:
    from mmpt.store.dataset import MmptDataset

log = logging.getLogger(__name__)

POINT_COLUMNS = ("id", "modality", "x", "y", "label", "split", "cluster", "caption", "row")
COLOUR_BY = ("label", "split", "modality", "cluster")
ITEM_CACHE = 256  # hover cards kept (LRU)


def _open(dataset: Any) -> MmptDataset:
    """An MmptDataset from a path/URI, an MmptDataset or a lance.LanceDataset."""
    from mmpt.store.dataset import MmptDataset, open_dataset

    if isinstance(dataset, MmptDataset):
        return dataset
    if isinstance(dataset, lance.LanceDataset):
        return MmptDataset(dataset, dataset.uri)
    if isinstance(dataset, str | Path):
        return open_dataset(dataset)
    raise DataError(f"expected a dataset path or an MmptDataset, got {type(dataset).__name__}")


class Explorer:
    """A run's embeddings of a dataset as 2-D points with hover cards, neighbours, search and a selection.

    >>> ex = Explorer("mmpt-demo/data.lance", "mmpt-demo/run")
    >>> df = ex.points()                      # PCA at once; ex.project("umap") computes UMAP in the background
    >>> ex.item(df.id[0], "image").image_png  # hover card: thumbnail, WAV clip, spectrogram, caption
    >>> ex.neighbours(df.id[0], k=5)
    >>> ex.search("a red circle", k=5)
    >>> ex.selection = df.id[:10]; ex.export_selection("picked.parquet")

    `run` is a run folder (or a checkpoint folder) or the run's column name; search and `embed=True` need
    the folder. The dataset version is pinned when the explorer opens (Lance snapshot isolation).
    """

    def __init__(
        self,
        dataset: Any,
        run: str | Path,
        *,
        modalities: Sequence[str] | None = None,
        embed: bool = False,
        name: str | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        from mmpt.embed.columns import run_name

        self.run_dir: Path | None = Path(run) if Path(run).exists() else None
        self.name = run_name(run, name) if self.run_dir is not None else check_run_name(name or str(run))
        self.device = device
        ds = _open(dataset)
        if embed:
            ds = self._embed(ds, modalities, progress)
        self.dataset = ds
        self.lance: lance.LanceDataset = ds.lance
        self.modalities = self._wanted(modalities, run)
        self.events = _Events()
        self.method = "pca"  # the layout `hover` uses: the one `points()` returned last
        self._lock = threading.RLock()
        self._selection: tuple[str, ...] = ()
        self._frame: pd.DataFrame | None = None
        self._items: OrderedDict[str, Item] = OrderedDict()
        self._load()

    def __repr__(self) -> str:
        return (
            f"Explorer({self.dataset.uri!r}, run={self.name!r}, modalities={self.modalities}, "
            f"points={len(self._point_row)}, version={self.lance.version})"
        )

    def __len__(self) -> int:
        return len(self._point_row)

    # -- opening -------------------------------------------------------------------------------------

    def _embed(self, ds: MmptDataset, modalities: Sequence[str] | None, progress: bool) -> MmptDataset:
        """Run `embed_run` for whatever the run has not embedded yet, then reopen the newest version."""
        from mmpt.embed.api import embed_run
        from mmpt.store.dataset import open_dataset

        if self.run_dir is None:
            raise ConfigError(f"embed=True needs the run folder; {self.name!r} is not a folder")
        embed_run(self.run_dir, ds, modalities, name=self.name, device=self.device, progress=progress)
        return open_dataset(ds.uri, storage_options=ds.storage_options)

    def _wanted(self, modalities: Sequence[str] | None, run: Any) -> tuple[str, ...]:
        """The modalities to explore (in MODALITIES order); ConfigError naming `mmpt embed` if some are missing."""
        names = self.lance.schema.names
        present = [m for m in MODALITIES if embedding_column(self.name, m) in names]
        asked = list(dict.fromkeys(modalities)) if modalities else present
        for m in asked:
            if m not in MODALITIES:
                raise ConfigError(f"unknown modality {m!r}; choose from {', '.join(MODALITIES)}")
        missing = [m for m in asked if m not in present] if asked else ["any modality"]
        if missing:
            raise ConfigError(
                f"run {self.name} has no embeddings of {', '.join(missing)} in {self.dataset.uri}: run "
                f"`mmpt embed --run {run} --data {self.dataset.uri}` or pass Explorer(..., embed=True)"
            )
        return tuple(m for m in MODALITIES if m in asked)

    def _load(self) -> None:
        """Read ids, metadata and every explored embedding column in one scan; build the point arrays."""
        names = self.lance.schema.names
        meta = [c for c in (LABEL, SPLIT, TEXT) if c in names]
        columns = {m: embedding_column(self.name, m) for m in self.modalities}
        clusters = self._cluster_columns()
        wanted = [ID, *meta, *columns.values(), *set(clusters.values())]
        # large batches: one Arrow chunk per fragment, so the vector columns are zero-copy views
        table = self.lance.to_table(columns=wanted, batch_size=1 << 20)
        n = table.num_rows
        self._ids = table[ID].to_numpy(zero_copy_only=False)
        self._id_row = {key: i for i, key in enumerate(self._ids.tolist())}
        if len(self._id_row) < n:
            raise DataError(f"{self.dataset.uri} has repeated ids; the explorer needs one row per id")
        self._arrow = {c: table[c].combine_chunks() for c in (ID, TEXT) if c in names}
        nothing = np.full(n, None, dtype=object)
        self._labels, self._splits, self._captions = (
            table[c].to_numpy(zero_copy_only=False) if c in names else nothing for c in (LABEL, SPLIT, TEXT)
        )
        self._vec = PointVectors({m: table[column] for m, column in columns.items()}, n)
        self._blocks = self._vec.blocks
        self._point_row = self._vec.point_row
        self._point_modality = self._vec.point_modality
        self._row_point = self._vec.row_point
        self._cluster = self._cluster_values(table, clusters)
        self._layouts = layout.Layouts(
            self._vec, self._ids, self._rows_of, self.lance, self.name, self.events.points.emit
        )

    def _cluster_columns(self, k: int | None = None) -> dict[str, str]:
        """Valid cached k-means columns `cluster_<run>_<modality>_k<k>` per modality (the smallest k unless given)."""
        out = {}
        schema = self.lance.schema
        for m in self.modalities:
            source = embedding_column(self.name, m)
            pattern = re.compile(rf"^cluster_{re.escape(self.name)}_{m}_k(\d+)$")
            found = sorted((int(g.group(1)), c) for c in schema.names if (g := pattern.match(c)))
            for kk, column in found:
                meta = {a.decode(): b.decode() for a, b in (schema.field(column).metadata or {}).items()}
                fresh = meta.get("mmpt.fingerprint") == column_fingerprint(self.lance, source)
                if (k is None or kk == k) and meta.get("mmpt.source") == source and fresh:
                    out[m] = column
                    break
        return out

    def _cluster_values(self, table: pa.Table, columns: dict[str, str]) -> np.ndarray:
        """Per-point cluster labels (-1 where none) from per-row cluster columns."""
        values = np.full(len(self._point_row), -1, np.int64)
        for m, column in columns.items():
            s, e = self._blocks[m]
            per_row = table[column].to_numpy(zero_copy_only=False)
            got = per_row[self._point_row[s:e]]
            values[s:e] = [int(v) if v is not None and v == v else -1 for v in got]
        return values

    # -- points and layouts ---------------------------------------------------------------------------

    def _base_frame(self) -> pd.DataFrame:
        """The point table without coordinates, built once: categoricals from codes and Arrow-backed strings
        keep 300k points at tens of milliseconds."""
        with self._lock:
            if self._frame is None:
                rows = self._point_row
                take = pa.array(rows)

                def strings(column: str) -> Any:
                    arrow = self._arrow.get(column)
                    return (
                        pd.Series([None] * len(rows), dtype=object)
                        if arrow is None
                        else arrow.take(take).to_pandas()
                    )

                def categorical(values: np.ndarray) -> pd.Categorical:
                    codes, uniques = pd.factorize(values, sort=True)
                    return pd.Categorical.from_codes(codes[rows], categories=uniques)

                cluster = pd.array(self._cluster, dtype="Int32")
                cluster[self._cluster < 0] = pd.NA
                self._frame = pd.DataFrame(
                    {
                        "id": strings(ID),
                        "modality": pd.Categorical.from_codes(
                            self._point_modality, categories=list(self.modalities)
                        ),
                        "label": categorical(self._labels),
                        "split": categorical(self._splits),
                        "cluster": cluster,
                        "caption": strings(TEXT),
                        "row": rows,
                    }
                )
            return self._frame

    def points(self, method: str = "pca") -> pd.DataFrame:
        """One row per (row, modality) embedding: id, modality, x, y, label, split, cluster, caption, row.

        The frame's index is the point index that `hover`, `neighbours` (`point`) and views use. PCA is
        computed at once; UMAP / t-SNE come from their cache or are computed here, blocking (use `project`
        to compute them in the background while PCA is shown).
        """
        coords = self.coordinates(method)
        frame = self._base_frame().copy(deep=False)
        frame.insert(2, "x", coords[:, 0])
        frame.insert(3, "y", coords[:, 1])
        return frame

    def coordinates(self, method: str = "pca") -> np.ndarray:
        """float32 [points, 2] coordinates of a layout (computed and kept if not yet); sets `method`."""
        coords = self._layouts.get(method)
        if coords is None:
            coords = self.project(method, background=False).result()
        self.method = method
        return coords

    def project(
        self,
        method: str = "umap",
        background: bool = True,
        *,
        seed: int = 0,
        on_progress: layout.Progress | None = None,
        **params: Any,
    ) -> layout.LayoutJob:
        """Compute a layout (pca, umap, tsne) and return its job: progress, done(), result(), cancel().

        When it finishes (not cancelled), `on_points` callbacks get the method name, in the worker thread.
        Cached columns are reused while the embeddings are unchanged; UMAP / t-SNE results are cached.
        `params` go to the method (e.g. `n_neighbors=30` for UMAP, `perplexity=50` for t-SNE). PCA always
        runs at once, in the calling thread.
        """
        return self._layouts.project(method, background, seed, on_progress, params)

    def on_points(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call `callback(method)` when a layout's coordinates are ready; returns a function that disconnects."""
        return self.events.points.connect(callback)

    def cluster(self, k: int = 8, *, seed: int = 0) -> np.ndarray:
        """k-means labels per point (each modality clustered on its own, cached as `cluster_<run>_<m>_k<k>`)."""
        from mmpt.embed.projections import clusters

        values = np.full(len(self._point_row), -1, np.int64)
        for m in self.modalities:
            result = clusters(self.dataset.uri, self.name, m, k, seed=seed)
            points = self._vec.points_of(m, self._rows_of(result.ids))
            values[points[points >= 0]] = result.values[points >= 0]
        with self._lock:
            self._cluster, self._frame = values, None
        self.events.points.emit(self.method)
        return values

    # -- colours, hover, links ----------------------------------------------------------------------

    def colours(self, by: str = "label") -> dict[Any, str]:
        """value -> '#rrggbb' for label / split / modality / cluster, the same in every call and process."""
        if by not in COLOUR_BY:
            raise DataError(f"colour by one of {', '.join(COLOUR_BY)}, not {by!r}")
        if by == "modality":
            return category_colours(self.modalities, by)
        if by == "cluster":
            return category_colours([int(c) if c >= 0 else None for c in np.unique(self._cluster)], by)
        return category_colours(pd.unique(self._labels if by == "label" else self._splits).tolist(), by)

    def point_colours(self, by: str = "label") -> np.ndarray:
        """'#rrggbb' per point (aligned with `points()`), from `colours(by)`."""
        mapping = self.colours(by)
        frame = self._base_frame()
        values = frame[by].astype(object).where(frame[by].notna(), None)
        return np.array([mapping[v] for v in values], dtype=object)

    def hover(self, x: float, y: float, radius: float | None = None, method: str | None = None) -> int | None:
        """Index of the point nearest to (x, y) in the current layout, or None if none lies within `radius`."""
        method = method or self.method
        if self._layouts.get(method) is None:
            self.coordinates(method)
        return self._layouts.nearest(method, x, y, radius)

    def link_rows(self, a: str | None = None, b: str | None = None) -> np.ndarray:
        """int64 [M, 2] point-index pairs of rows embedded in both modalities a and b (default: the first two)."""
        if len(self.modalities) < 2 and (a is None or b is None):
            return np.zeros((0, 2), np.int64)
        a = a or self.modalities[0]
        b = b or next(m for m in self.modalities if m != a)
        for m in (a, b):
            self._check_modality(m)
        both = (self._row_point[a] >= 0) & (self._row_point[b] >= 0)
        return np.stack([self._row_point[a][both], self._row_point[b][both]], axis=1)

    def point_index(self, id: str, modality: str) -> int | None:
        """The point of row `id` in `modality`, or None if that row has no such embedding."""
        self._check_modality(modality)
        point = int(self._row_point[modality][self._row(id)])
        return None if point < 0 else point

    # -- hover cards ----------------------------------------------------------------------------------

    def item(self, id: str, modality: str | None = None) -> Item:
        """What a hover shows for a row: thumbnail PNG, WAV clip, spectrogram PNG, caption, label, split.

        Read by row position with one blob read per medium; the last `ITEM_CACHE` cards are kept (LRU).
        """
        if modality is not None:
            self._check_modality(modality)
        with self._lock:
            cached = self._items.get(id)
            if cached is not None:
                self._items.move_to_end(id)
        if cached is None:
            row = self._row(id)
            names = self.lance.schema.names
            blobs = {}
            for m in ("image", "audio"):
                data = self.lance.read_blobs(m, indices=[row], preserve_order=True) if m in names else []
                blobs[m] = (data[0][1] or None) if data else None  # a null blob reads as None or b""
            card = Item(
                id=id,
                modality=None,
                row=row,
                label=self._labels[row],
                split=self._splits[row],
                caption=self._captions[row],
            )
            cached = build_item(card, blobs["image"], blobs["audio"])
            with self._lock:
                self._items[id] = cached
                while len(self._items) > ITEM_CACHE:
                    self._items.popitem(last=False)
        return cached if modality is None else replace(cached, modality=modality)

    # -- neighbours and search -----------------------------------------------------------------------

    def neighbours(
        self,
        id: str,
        k: int = 10,
        modality: str | None = None,
        target: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The k points nearest (cosine) to row `id`'s `modality` embedding: id, modality, score, label, point.

        `modality` defaults to the first explored modality the row has; `target` (a modality, a list, or
        "all") defaults to the query's own modality. The query point itself is left out; the same row in
        another modality is not. Fewer than k rows come back when fewer exist.
        """
        row = self._row(id)
        if modality is None:
            modality = next((m for m in self.modalities if self._row_point[m][row] >= 0), None)
        else:
            self._check_modality(modality)
        point = -1 if modality is None else int(self._row_point[modality][row])
        if modality is None or point < 0:
            raise DataError(f"row {id!r} has no {modality or 'explored'} embedding in run {self.name}")
        targets = self._targets(target, [modality])
        return self._hits(*self._vec.nearest(self._vec.vector(point), targets, k, exclude=point))

    def search(
        self,
        query: Any,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        *,
        kind: str | None = None,
        sample_rate: int | None = None,
    ) -> pd.DataFrame:
        """The k points nearest to a text, an image (path, PIL, bytes) or a sound (path, bytes, waveform).

        The query is embedded with the run's model (`mmpt.embed.encoder.load_model`). `modality` defaults to
        every explored modality other than the query's own. A str is text unless it names an existing image
        or audio file; `kind` ("text", "image", "audio") overrides the guess. Returns id, modality, score,
        label, point.
        """
        from mmpt.explore.query import embed_query

        if self.run_dir is None:
            raise ConfigError(
                f"search needs the run folder (its model); this explorer was given the name {self.name}"
            )
        kind, vector = embed_query(self.run_dir, query, kind, sample_rate, self.device)
        if vector.shape[0] != self._vec.dim:
            raise DataError(f"the model embeds {vector.shape[0]} dims but the columns hold {self._vec.dim}")
        others = [m for m in self.modalities if m != kind] or list(self.modalities)
        return self._hits(*self._vec.nearest(vector, self._targets(modality, others), k))

    def _targets(self, target: str | Sequence[str] | None, default: list[str]) -> list[str]:
        if target is None:
            return default
        if target == "all":
            return list(self.modalities)
        chosen = [target] if isinstance(target, str) else list(target)
        for m in chosen:
            self._check_modality(m)
        return [m for m in self.modalities if m in chosen]

    def _hits(self, points: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """Search results as a frame: id, modality, score, label, point."""
        rows = self._point_row[points]
        return pd.DataFrame(
            {
                "id": self._ids[rows],
                "modality": np.array(self.modalities, dtype=object)[self._point_modality[points]],
                "score": scores,
                "label": self._labels[rows],
                "point": points,
            }
        )

    # -- selection ------------------------------------------------------------------------------------

    @property
    def selection(self) -> tuple[str, ...]:
        """Selected row ids, in row order. A row is selected as a whole: all of its points light up."""
        return self._selection

    @selection.setter
    def selection(self, ids: Iterable[str] | None) -> None:
        self.select(ids)

    def select(self, ids: Iterable[str] | str | None) -> bool:
        """Set the selection to these row ids (unknown ids raise DataError); True if it changed.

        `on_selection` callbacks fire only on a real change; order and duplicates do not count.
        """
        if ids is None:
            ids = []
        elif isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        unknown = [i for i in ids if i not in self._id_row]
        if unknown:
            raise DataError(f"{len(unknown)} selected ids are not in the dataset, e.g. {unknown[:3]}")
        return self._select_rows(np.array([self._id_row[i] for i in ids], np.int64))

    def select_points(self, points: Iterable[int]) -> bool:
        """Select the rows of these point indices (what a lasso over the scatter gives); True if it changed."""
        points = np.asarray(list(points), np.int64)
        if len(points) and (points.min() < 0 or points.max() >= len(self._point_row)):
            raise DataError(f"point indices must be in 0..{len(self._point_row) - 1}")
        return self._select_rows(self._point_row[points])

    def _select_rows(self, rows: np.ndarray) -> bool:
        value = tuple(self._ids[np.unique(rows)].tolist())
        with self._lock:
            if value == self._selection:
                return False
            self._selection = value
        self.events.selection.emit(value)
        return True

    def selection_points(self) -> np.ndarray:
        """Point indices (ascending) of every point of the selected rows, for views to highlight."""
        rows = np.array([self._id_row[i] for i in self._selection], np.int64)
        selected = np.zeros(len(self._ids), bool)
        selected[rows] = True
        return np.flatnonzero(selected[self._point_row])

    def on_selection(self, callback: Callable[[tuple[str, ...]], Any]) -> Callable[[], None]:
        """Call `callback(ids)` whenever the selection changes; returns a function that disconnects it."""
        return self.events.selection.connect(callback)

    def selected_frame(self) -> pd.DataFrame:
        """The selected rows' metadata (every column but blobs and vectors) plus their position `row`."""
        rows = np.array([self._id_row[i] for i in self._selection], np.int64)
        return export.rows_frame(self.lance, rows)

    def export_selection(self, path: str | Path | None = None, format: str = "parquet") -> str:
        """Write out the selection; returns the path, the filter (lance-filter) or the tag name (tag).

        - parquet / csv: `selected_frame()` at `path`, written to a temp file and renamed.
        - lance-filter: the `id IN (...)` filter for Lance, DuckDB or `mmpt` (also written to `path` if given).
        - lance: a new Lance dataset at `path` with the selected rows in full, blobs included.
        - tag: Lance tag `path` on the version the explorer reads, plus the filter in
          `<dataset>/_mmpt/selections/<tag>.json`: that version + filter give back exactly these rows.
        """
        if format not in export.FORMATS:
            raise DataError(f"unknown export format {format!r}; use one of {', '.join(export.FORMATS)}")
        if not self._selection:
            raise DataError("nothing is selected")
        if format == "lance-filter":
            text = export.id_filter(self._selection)
            if path is not None:
                export.write_filter(text, path)
            return text
        if path is None:
            raise DataError(
                f"export format {format} needs a path" + (" (the tag name)" if format == "tag" else "")
            )
        if format == "tag":
            return export.tag_selection(self.lance, self.dataset.uri, str(path), self._selection)
        if format == "lance":
            rows = np.array([self._id_row[i] for i in self._selection], np.int64)
            return export.copy_rows(self.lance, rows, path)
        return export.write_table(self.selected_frame(), path, format)

    # -- helpers --------------------------------------------------------------------------------------

    def _rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of these ids (-1 for ids not in the dataset)."""
        return np.array([self._id_row.get(i, -1) for i in ids], np.int64)

    def _row(self, id: str) -> int:
        row = self._id_row.get(id)
        if row is None:
            raise DataError(f"no row with id {id!r} in the dataset")
        return row

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise DataError(
                f"modality {modality!r} is not explored here; this explorer has {', '.join(self.modalities)}"
            )


class _Events:
    """The explorer's signals: `selection(ids)` and `points(method)`."""

    def __init__(self) -> None:
        self.selection = Signal("selection")
        self.points = Signal("points")
