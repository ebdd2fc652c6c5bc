"""ExplorerPanel: a jupyter-scatter view of an `mmpt.explore.Explorer` session (the session keeps all state).

The scatter gets only coordinates and categories; hover previews (thumbnail PNG / WAV clip) are produced on
demand from the dataset when a point is hovered, never as 100k data URIs up front. The hover card beside the
map shows the row (thumbnail, spectrogram, caption) and plays its clip as soon as the point is hovered; the
scatter's own tooltip shows the thumbnail (jupyter-scatter waits 500 ms after the last mouse move before it
asks, too long for sound: the card answers in ~0.2 s). The selection
syncs both ways: a lasso or click in the scatter selects the rows of those points in the session; setting the
session's selection (from Python or a search) highlights every point of those rows and fills the grid.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd

from mmpt.errors import ConfigError
from mmpt.notebook import html as H

UNSET: Any = object()
COLOUR_BY = ("label", "split", "modality", "cluster")
EXPORT_FORMATS = ("parquet", "csv", "lance-filter", "lance", "tag")
# stand-ins sent when a point's row lacks the medium, so the tooltip never shows or plays the previous point's
SILENT_WAV = (
    "data:audio/wav;base64,"
    + base64.b64encode(
        b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00\x02\x00\x10\x00"
        b"data\x00\x00\x00\x00"
    ).decode()
)
BLANK_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/"
    "PchI7wAAAABJRU5ErkJggg=="
)


def _scatter_frame(points: pd.DataFrame) -> pd.DataFrame:
    """The columns the scatter needs; `cluster` becomes a category ('-' where unclustered) and `preview` the id."""
    frame = points[["x", "y", "id", "modality", "label", "split", "row"]].copy()
    cluster = points["cluster"].astype("string").fillna("-")
    frame["cluster"] = pd.Categorical(cluster)
    for column in ("label", "split"):
        frame[column] = frame[column].cat.add_categories(["-"]).fillna("-")
    return frame


def _square_domains(
    frame: pd.DataFrame, pad: float = 0.06
) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y scale domains of equal span around the points, padded: the map keeps the layout's aspect ratio
    (jscatter would stretch x and y to [-1, 1] each) and no point is cut by the canvas edge."""
    x, y = frame["x"].to_numpy(float), frame["y"].to_numpy(float)
    if not len(x):
        return (-1.0, 1.0), (-1.0, 1.0)
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    half = max(x.max() - x.min(), y.max() - y.min()) / 2 * (1 + pad) or 1.0
    return (float(cx - half), float(cx + half)), (float(cy - half), float(cy + half))


class ExplorerPanel:
    """A notebook view of an Explorer session: scatter, hover card, selection grid, neighbours, search, export.

    >>> panel = ExplorerPanel(mmpt.Explorer("data.lance", "runs/r1"))
    >>> panel.selection(["demo-000001"])   # highlights that row's points and fills the grid
    >>> panel.search("a red circle")        # hits become the selection
    >>> panel.selection()                   # -> the selected ids, also after a lasso in the browser
    """

    def __init__(
        self,
        explorer: Any,
        run: str | Path | None = None,
        *,
        method: str = "pca",
        color_by: str = "label",
        hover: str = "auto",
        width: int = 760,
        height: int = 460,
        grid_size: int = 24,
        k: int = 8,
    ) -> None:
        import jscatter

        if run is not None:
            from mmpt.explore.session import Explorer

            explorer = Explorer(explorer, run)
        self.explorer = explorer
        self.grid_size = grid_size
        self.k = k
        self.hits: pd.DataFrame | None = None
        self.neighbour_frame: pd.DataFrame | None = None
        self._syncing = False
        self._lock = threading.Lock()
        self._hover_times: list[float] = []
        points = explorer.points(method)
        self.frame = _scatter_frame(points)
        modalities = set(self.frame["modality"].astype(str))
        media = self._row_media()
        if hover == "auto":
            hover = "audio" if "audio" in media else "image"
        if hover not in ("audio", "image", "text"):
            raise ConfigError(f"hover must be 'auto', 'audio', 'image' or 'text', got {hover!r}")
        self.hover_type = hover
        # what the scatter's tooltip previews: the clip plays from the hover card, so the tooltip shows an image
        self.tooltip_type = "image" if hover == "audio" and "image" in media else hover

        x_scale, y_scale = _square_domains(self.frame)
        self.scatter = jscatter.Scatter(
            data=self.frame,
            x="x",
            y="y",
            x_scale=x_scale,
            y_scale=y_scale,
            width=width,
            height=height,
            legend=True,
            axes=False,
            data_use_index=False,
        )
        self.scatter.color(by=color_by, map=self._colour_map(color_by))
        self.scatter.size(default=4 if len(self.frame) < 20_000 else 2)
        self.scatter.tooltip(
            True,
            properties=["id", "modality", "label", "split"],
            preview="id",
            preview_type=self.tooltip_type,
            preview_audio_controls=True,
        )
        widget = self.scatter.widget
        widget._handle_tooltip = self._serve_tooltip  # previews on demand (jscatter 1.0 reads a frame column)
        widget.observe(self._on_widget_selection, names="selection")
        widget.observe(self._on_hover, names="hovering")
        widget.add_class("mmpt-scatter")
        self._disconnect = [
            explorer.on_selection(self._on_selection),
            explorer.events.points.connect(self._on_points),
        ]

        self.colour_w = W.Dropdown(
            options=[c for c in COLOUR_BY if c != "modality" or len(modalities) > 1],
            value=color_by,
            description="colour",
            layout=W.Layout(width="200px"),
        )
        self.colour_w.observe(lambda c: self.color_by(c["new"]), names="value")
        self.method_w = W.Dropdown(
            options=["pca", "umap", "tsne"],
            value=method,
            description="layout",
            layout=W.Layout(width="200px"),
        )
        self.method_w.observe(lambda c: self.layout(c["new"]), names="value")
        self.link_w = W.ToggleButton(
            value=False,
            description="link rows",
            icon="link",
            tooltip="connect the image, text and audio points of each row",
        )
        self.link_w.observe(lambda c: self.link(c["new"]), names="value")
        self.lasso_w = W.ToggleButton(
            value=False, description="lasso", tooltip="drag to select (else pan/zoom)"
        ).add_class("mmpt-lasso")
        self.lasso_w.observe(lambda c: self.scatter.mouse("lasso" if c["new"] else "panZoom"), names="value")
        self.clear_w = W.Button(description="clear selection")
        self.clear_w.on_click(lambda _: self.selection([]))
        self.query_w = W.Text(
            placeholder="search: text, or a path to an image / audio file",
            continuous_update=False,
            layout=W.Layout(width="340px"),
        ).add_class("mmpt-search")
        self.query_w.observe(lambda c: c["new"] and self.search(c["new"]), names="value")
        self.search_w = W.Button(description="search", icon="search").add_class("mmpt-search-button")
        self.search_w.on_click(lambda _: self.search(self.query_w.value))
        self.format_w = W.Dropdown(options=EXPORT_FORMATS, value="parquet", layout=W.Layout(width="120px"))
        self.path_w = W.Text(value="selection.parquet", layout=W.Layout(width="200px"))
        self.export_w = W.Button(description="export selection", icon="download")
        self.export_w.on_click(lambda _: self._export_clicked())
        self.status_w = W.HTML().add_class("mmpt-explorer-status")
        self.hover_w = W.HTML("<em>hover a point</em>", layout=W.Layout(width="210px")).add_class(
            "mmpt-hover"
        )
        self.grid_w = W.HTML().add_class("mmpt-selection-grid")
        self.neighbours_w = W.HTML("<em>click a point to see its neighbours</em>").add_class(
            "mmpt-neighbours"
        )
        self.select_neighbours_w = W.Button(description="select these")
        self.select_neighbours_w.on_click(
            lambda _: self.neighbour_frame is not None and self.selection(list(self.neighbour_frame["id"]))
        )
        tools = W.HBox(
            [self.colour_w, self.method_w, self.lasso_w, self.link_w, self.clear_w],
            layout=W.Layout(flex_flow="row wrap"),
        )
        find = W.HBox(
            [self.query_w, self.search_w, self.format_w, self.path_w, self.export_w],
            layout=W.Layout(flex_flow="row wrap"),
        )
        tabs = W.Tab(children=[self.grid_w, W.VBox([self.neighbours_w, self.select_neighbours_w])])
        tabs.set_title(0, "selection")
        tabs.set_title(1, "neighbours")
        self.tabs = tabs
        # the scatter's box takes its content's width (jscatter's toolbar + the canvas): a fixed width squeezed
        # the canvas under the toolbar and the hover card
        main = W.HBox([W.Box([widget], layout=W.Layout(flex="0 0 auto")), self.hover_w])
        self.widget = W.VBox([tools, find, main, self.status_w, tabs]).add_class("mmpt-explorer-panel")
        self._status(f"{len(self.frame):,} points · {', '.join(sorted(modalities))} · layout {method}")
        self._render_selection()

    # --- facade: read when called bare, set (and return self) when given a value --------------------
    def selection(self, ids: Any = UNSET) -> tuple[str, ...] | ExplorerPanel:
        """The selected row ids, or select these ids (highlights their points and fills the grid)."""
        if ids is UNSET:
            return self.explorer.selection
        self.explorer.select([] if ids is None else list(ids))
        return self

    def selected_frame(self) -> pd.DataFrame:
        """The selected rows' metadata, as the session gives it."""
        return self.explorer.selected_frame()

    def color_by(self, by: str | None = None) -> str | ExplorerPanel:
        """Colour points by label, split, modality or cluster (stable colours from the session)."""
        if by is None:
            return self.colour_w.value
        self.scatter.color(by=by, map=self._colour_map(by))
        if self.colour_w.value != by:
            self.colour_w.value = by
        return self

    def layout(self, method: str | None = None) -> str | ExplorerPanel:
        """Switch to a projection: PCA at once, UMAP / t-SNE computed in the background while the current shows."""
        if method is None:
            return self.explorer.method
        self._status(f"computing {method} layout ...")
        self._layout_job = self.explorer.project(
            method, background=True, on_progress=self._on_layout_progress
        )
        if method == "pca" or self._layout_job.done():
            self._on_points(method)
        if self.method_w.value != method:
            self.method_w.value = method
        return self

    def link(self, on: bool | None = None) -> bool | ExplorerPanel:
        """Draw lines between the points of the same row (image, text, audio), or read whether they are drawn."""
        if on is None:
            return self.link_w.value
        self.scatter.connect(by="row" if on else None)
        if self.link_w.value != on:
            self.link_w.value = on
        return self

    def search(self, query: Any = UNSET, k: int = 10) -> pd.DataFrame | None | ExplorerPanel:
        """Search by text, image or audio; hits become the selection and fill the grid with their scores."""
        if query is UNSET:
            return self.hits
        started = time.perf_counter()
        try:
            self.hits = self.explorer.search(query, k=k)
        except Exception as exc:  # a bad query is shown in the panel, not raised into a widget callback
            self._status(f"search failed: {exc}", error=True)
            return self
        if isinstance(query, str) and self.query_w.value != query:
            self.query_w.value = query
        self._status(f"search {query!r}: {len(self.hits)} hits in {time.perf_counter() - started:.2f} s")
        self.selection(list(dict.fromkeys(self.hits["id"])))
        return self

    def neighbours(
        self, id: str | None = None, modality: str | None = None
    ) -> pd.DataFrame | None | ExplorerPanel:
        """Show the k nearest points of row `id` (in `modality`) in the neighbours tab, or read them."""
        if id is None:
            return self.neighbour_frame
        self.neighbour_frame = self.explorer.neighbours(id, k=self.k, modality=modality)
        items = [
            self.explorer.item(i, m)
            for i, m in zip(self.neighbour_frame["id"], self.neighbour_frame["modality"], strict=True)
        ]
        self.neighbours_w.value = H.grid(
            items,
            list(self.neighbour_frame["score"]),
            title=f"{len(items)} nearest to {id} ({modality or 'its first modality'})",
            css_class="mmpt-items mmpt-neighbour-items",
        )
        self.tabs.selected_index = 1
        return self

    def export(self, path: str | Path | None = None, format: str = "parquet") -> str:
        """Write the selection out through the session (parquet, csv, lance-filter, lance, tag); returns where."""
        where = self.explorer.export_selection(path, format)
        self._status(f"exported {len(self.explorer.selection)} rows: {where[:200]}")
        return where

    def close(self) -> None:
        """Disconnect from the session and close the widgets."""
        for disconnect in self._disconnect:
            disconnect()
        self.widget.close()
        self.scatter.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- session -> view ----------------------------------------------------------------------------
    def _on_selection(self, ids: tuple[str, ...]) -> None:
        """The session's selection changed (from Python, a search or the scatter): mirror it, refill the grid."""
        points = self.explorer.selection_points()
        widget = self.scatter.widget
        current = widget.selection
        if current is None or not np.array_equal(np.sort(np.asarray(current)), points):
            with self._muted():
                self.scatter.selection(points)
        self._render_selection()

    def _on_points(self, method: str) -> None:
        """A layout is ready (maybe in a worker thread): move the points there."""
        coords = self.explorer.coordinates(method)
        self.frame["x"], self.frame["y"] = coords[:, 0], coords[:, 1]
        x_scale, y_scale = _square_domains(self.frame)
        self.scatter.xy(x="x", y="y", x_scale=x_scale, y_scale=y_scale)
        self._status(f"{len(self.frame):,} points · layout {method}")

    def _on_layout_progress(self, fraction: float, message: str = "") -> None:
        self._status(f"layout: {100 * fraction:.0f}% {message}")

    # --- view -> session ----------------------------------------------------------------------------
    def _on_widget_selection(self, change: dict[str, Any]) -> None:
        """A lasso or click in the browser: select those points' rows; one point clicked also shows neighbours."""
        if self._syncing:
            return
        points = np.asarray(change["new"] if change["new"] is not None else [], dtype=np.int64)
        if len(points) == 1:
            rec = self.frame.iloc[int(points[0])]
            try:
                self.neighbours(str(rec["id"]), str(rec["modality"]))
            except Exception as exc:  # shown, not raised into the comm handler
                self._status(f"neighbours failed: {exc}", error=True)
        self.explorer.select_points(points)

    def _on_hover(self, change: dict[str, Any]) -> None:
        """Fill the hover card (thumbnail, spectrogram, player, caption) of the point under the mouse."""
        index = change["new"]
        if index is None:
            return
        started = time.perf_counter()
        rec = self.frame.iloc[int(index)]
        item = self.explorer.item(str(rec["id"]), str(rec["modality"]))
        card = H.card(item, extra_class="mmpt-hover-card", autoplay=self.hover_type == "audio")
        self.hover_w.value = H.CARD_STYLE + card
        self._hover_times.append(time.perf_counter() - started)

    def _serve_tooltip(self, event: dict[str, Any]) -> None:
        """Answer jscatter's tooltip request: its properties from the frame, its preview made now from the blob."""
        from jscatter.widget import EVENT_TYPES

        index = int(event["index"])
        rec = self.frame.iloc[index]
        properties = {
            p: (v.item() if hasattr(v, "item") else str(v))
            for p in event.get("properties") or []
            if p in self.frame.columns
            for v in [rec[p]]
        }
        preview = None
        if event.get("preview") is not None:
            item = self.explorer.item(str(rec["id"]), str(rec["modality"]))
            if self.tooltip_type == "audio":
                preview = item.audio_uri() or SILENT_WAV
            elif self.tooltip_type == "image":
                preview = item.image_uri() or item.spectrogram_uri() or BLANK_PNG
            else:
                preview = item.caption or ""
        self.scatter.widget.send(
            {"type": EVENT_TYPES["TOOLTIP"], "index": index, "preview": preview, "properties": properties}
        )

    # --- helpers ------------------------------------------------------------------------------------
    @contextmanager
    def _muted(self) -> Iterator[None]:
        """Writes to the scatter's selection inside this block are not echoed back into the session."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _row_media(self) -> set[str]:
        return set(self.explorer.dataset.modalities())

    def _colour_map(self, by: str) -> dict[str, str]:
        colours = self.explorer.colours(by)
        values = self.frame[by].cat.categories if hasattr(self.frame[by], "cat") else self.frame[by].unique()
        return {
            str(v): colours.get(v, colours.get(_maybe_int(v), colours.get(None, "#bdbdbd"))) for v in values
        }

    def _render_selection(self) -> None:
        ids = self.explorer.selection
        if not ids:
            self.grid_w.value = (
                "<em class='mmpt-empty'>nothing selected: lasso points, click one, or search</em>"
            )
            return
        hits = self.hits
        scores = None
        shown = list(ids[: self.grid_size])
        if hits is not None and set(ids) == set(hits["id"]):  # the selection is a search result: best first
            best = hits.drop_duplicates("id")
            shown = list(best["id"][: self.grid_size])
            scores = list(best["score"][: self.grid_size])
        items = [self.explorer.item(i) for i in shown]
        more = f" (showing {len(shown)})" if len(ids) > len(shown) else ""
        self.grid_w.value = H.grid(
            items, scores, title=f"{len(ids)} selected{more}", css_class="mmpt-items mmpt-selection-items"
        )

    def _export_clicked(self) -> None:
        try:
            self.export(self.path_w.value or None, self.format_w.value)
        except Exception as exc:
            self._status(f"export failed: {exc}", error=True)

    def _status(self, text: str, error: bool = False) -> None:
        colour = "#b00" if error else "#333"
        self.status_w.value = f"<span style='color:{colour}'>{H.esc(text)}</span>"


def _maybe_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value
