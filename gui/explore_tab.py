"""The Explore tab: a view of an `mmpt.Explorer` session (points, hover card, neighbours, search, selection, export).

The explorer holds the state (coordinates, colours, the selection); this tab draws it in a ScatterView and
writes user actions back to it. Explorer callbacks may fire in worker threads, so they are forwarded through
queued Qt signals before touching widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gui.errors import show_error, show_exception
from gui.sample_grid import ItemCard, SampleGrid
from gui.scatter import ScatterView
from gui.settings import Settings
from gui.workers import Worker, start_worker

if TYPE_CHECKING:
    import pandas as pd

METHODS = ("pca", "umap", "tsne")
COLOUR_BY = ("label", "split", "modality", "cluster")
FORMATS = ("parquet", "csv", "lance-filter", "lance", "tag")
MISSING = "#bdbdbd"


def open_explorer(dataset: str, run: str, embed: bool) -> tuple[Any, pd.DataFrame]:
    """An Explorer on (dataset, run) and its PCA points (in a worker: embedding may run the model)."""
    import mmpt

    explorer = mmpt.Explorer(dataset, run, embed=embed, progress=False)
    return explorer, explorer.points("pca")


def colour_codes(
    frame: pd.DataFrame, by: str, mapping: dict[Any, str]
) -> tuple[np.ndarray, list[str], list[str]]:
    """Per-point colour codes, the colour list and the legend names for `frame[by]` and the explorer's mapping."""
    import pandas as pd

    values = frame[by]
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = pd.Series(pd.Categorical(values.astype(object).where(values.notna(), None)))
    categories = list(values.cat.categories)
    codes = values.cat.codes.to_numpy().astype(np.int64)
    colours = [mapping.get(c, MISSING) for c in categories]
    names = [str(c) for c in categories]
    codes = np.where(codes < 0, len(categories), codes)
    return codes, [*colours, mapping.get(None, MISSING)], [*names, "(none)"]


def thumbnails(explorer: Any, ids: list[Any]) -> dict[Any, tuple[bytes | None, bytes | None]]:
    """Grid thumbnails of selected rows from the explorer's hover cards (worker thread)."""
    out = {}
    for key in ids:
        item = explorer.item(key)
        out[key] = (item.image_png, item.spectrogram_png)
    return out


class ExploreTab(QWidget):
    """Scatter of a run's embeddings with hover preview, neighbours, search, a linked selection grid and export."""

    points_ready = Signal(str)  # forwarded from Explorer.on_points (any thread)
    selection_changed = Signal(object)  # forwarded from Explorer.on_selection (any thread)
    layout_progress = Signal(float, str)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.explorer: Any = None
        self.frame: pd.DataFrame | None = None
        self.worker: Worker | None = None
        self.search_worker: Worker | None = None
        self._disconnect: list[Any] = []
        self.run = QComboBox(editable=True, objectName="exploreRun")
        self.run.addItems(settings.recent("runs"))
        self.dataset = QLineEdit(objectName="exploreDataset", placeholderText="dataset")
        self.embed = QCheckBox("embed if missing", checked=True)
        open_button = QPushButton("Open", objectName="exploreOpen")
        open_button.clicked.connect(lambda: self.open(self.dataset.text(), self.run.currentText()))
        self.method = QComboBox(objectName="layoutMethod")
        self.method.addItems(METHODS)
        self.method.currentTextChanged.connect(self.set_method)
        self.colour_by = QComboBox(objectName="colourBy")
        self.colour_by.addItems(COLOUR_BY)
        self.colour_by.currentTextChanged.connect(self.recolour)
        self.state = QLabel(objectName="exploreState")
        top = QHBoxLayout()
        for text, widget in (
            ("Run", self.run),
            ("Dataset", self.dataset),
            (None, self.embed),
            (None, open_button),
            ("Layout", self.method),
            ("Colour by", self.colour_by),
        ):
            if text:
                top.addWidget(QLabel(text))
            top.addWidget(widget, 2 if widget in (self.run, self.dataset) else 0)

        self.scatter = ScatterView()
        self.scatter.hovered.connect(self._hovered)
        self.scatter.clicked.connect(self._clicked)
        self.scatter.selectionChanged.connect(self._lassoed)
        self.card = ItemCard()
        self.play_hover = QCheckBox("play audio on hover", objectName="playOnHover")
        self.hits_title = QLabel("neighbours of the clicked point")
        self.hits = QListWidget(objectName="hits")
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.card)
        side_layout.addWidget(self.play_hover)
        side_layout.addWidget(self.hits_title)
        side_layout.addWidget(self.hits, 1)

        self.query = QLineEdit(
            objectName="searchQuery", placeholderText="search: a text, e.g. 'a red circle'"
        )
        self.query.returnPressed.connect(lambda: self.search(self.query.text()))
        self.k = QSpinBox(minimum=1, maximum=1000, value=20)
        search_button = QPushButton("Search")
        search_button.clicked.connect(lambda: self.search(self.query.text()))
        file_button = QPushButton("Search with file…")
        file_button.clicked.connect(self._search_file)
        self.grid = SampleGrid(lambda ids: thumbnails(self.explorer, ids))
        self.grid.setObjectName("selectionGrid")
        self.grid.chosen.connect(lambda key: self.card.show_item(self.explorer.item(key)))
        self.format = QComboBox(objectName="exportFormat")
        self.format.addItems(FORMATS)
        export = QPushButton("Export selection…", objectName="exportButton")
        export.clicked.connect(self._export_clicked)
        clear = QPushButton("Clear selection")
        clear.clicked.connect(lambda: self.explorer and self.explorer.select([]))
        self.selection_label = QLabel("nothing selected", objectName="selectionLabel")
        tools = QHBoxLayout()
        for widget in (
            self.query,
            self.k,
            search_button,
            file_button,
            self.selection_label,
            clear,
            self.format,
            export,
        ):
            tools.addWidget(widget, 3 if widget is self.query else 0)

        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.scatter)
        upper.addWidget(side)
        upper.setSizes([900, 300])
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addLayout(tools)
        lower_layout.addWidget(self.grid)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(upper)
        body.addWidget(lower)
        body.setSizes([520, 220])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.state)
        layout.addWidget(body, 1)

        self.points_ready.connect(self._points_ready, Qt.ConnectionType.QueuedConnection)
        self.selection_changed.connect(self._show_selection, Qt.ConnectionType.QueuedConnection)
        self.layout_progress.connect(lambda f, m: self.state.setText(f"{m} ({f:.0%})"))
        self._hover_timer = QTimer(self, singleShot=True, interval=15)
        self._hover_timer.timeout.connect(self._show_hover)
        self._hover_index = -1

    # --- opening ---------------------------------------------------------------------------------
    def open(self, dataset: str, run: str) -> None:
        """Open an explorer on a dataset and a run (in a worker)."""
        dataset, run = dataset.strip(), run.strip()
        if not dataset or not run:
            show_error(self, "choose a dataset and a run to explore")
            return
        self.dataset.setText(dataset)
        self.run.setCurrentText(run)
        self.state.setText(f"opening run {Path(run).name} on {Path(dataset).name}…")
        self.worker = start_worker(
            open_explorer, dataset, run, self.embed.isChecked(), on_result=self._opened, on_error=self._failed
        )

    def _failed(self, reason: str, details: str) -> None:
        self.worker = None
        self.state.setText(reason)
        show_error(self, reason, details)

    def _opened(self, result: tuple[Any, pd.DataFrame]) -> None:
        self.worker = None
        self.close_explorer()
        self.explorer, frame = result
        self._disconnect = [
            self.explorer.on_points(self.points_ready.emit),
            self.explorer.on_selection(self.selection_changed.emit),
        ]
        self.settings.add_recent("runs", self.run.currentText())
        self.method.blockSignals(True)
        self.method.setCurrentText("pca")
        self.method.blockSignals(False)
        self._show_points(frame)
        self.state.setText(
            f"{self.explorer.name}: {len(frame):,} points · {', '.join(self.explorer.modalities)}"
        )

    def close_explorer(self) -> None:
        """Disconnect from the current explorer (callbacks must not reach a closed window)."""
        for disconnect in self._disconnect:
            disconnect()
        self._disconnect = []

    # --- points and colours ----------------------------------------------------------------------
    def _show_points(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        codes, colours, names = colour_codes(
            frame, self.colour_by.currentText(), self.explorer.colours(self.colour_by.currentText())
        )
        x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
        self.scatter.set_points(
            np.nan_to_num(x, nan=np.nanmin(x)), np.nan_to_num(y, nan=np.nanmin(y)), codes, colours, names
        )
        self._show_selection(self.explorer.selection)

    def recolour(self, by: str) -> None:
        """Colour the points by label, split, modality or cluster."""
        if self.explorer is None or self.frame is None or self.frame.empty:
            return
        codes, colours, names = colour_codes(self.frame, by, self.explorer.colours(by))
        self.scatter.set_colours(codes, colours, names)

    def set_method(self, method: str) -> None:
        """Switch layout; UMAP / t-SNE are computed in the background while the current one stays on screen."""
        if self.explorer is None:
            return
        self.state.setText(f"computing {method}…")
        self._wanted = method
        try:
            job = self.explorer.project(method, background=True, on_progress=self.layout_progress.emit)
        except Exception as exc:
            show_exception(self, exc)
            return
        if job.done():
            self._points_ready(method)

    def _points_ready(self, method: str) -> None:
        if self.explorer is None or method != getattr(self, "_wanted", "pca"):
            return
        self._show_points(self.explorer.points(method))
        self.state.setText(f"{method}: {len(self.frame):,} points")

    # --- hover and click -------------------------------------------------------------------------
    def _hovered(self, index: int) -> None:
        self._hover_index = index
        if index >= 0:
            self._hover_timer.start()

    def _show_hover(self) -> None:
        """Show the hovered point's card (and play its clip if asked)."""
        self.show_point(self._hover_index, play=self.play_hover.isChecked())

    def show_point(self, index: int, play: bool = False) -> None:
        """Show point `index`'s card; play its clip when `play` and it is an audio point."""
        if self.explorer is None or self.frame is None or index < 0 or index >= len(self.frame):
            return
        point = self.frame.iloc[index]
        item = self.explorer.item(point["id"], str(point["modality"]))
        self.card.show_item(item)
        if play and str(point["modality"]) == "audio" and item.audio_wav:
            self.card.player.play()

    def _clicked(self, index: int) -> None:
        if self.explorer is None or index < 0:
            return
        point = self.frame.iloc[index]
        self.show_point(index)
        hits = self.explorer.neighbours(
            point["id"], k=self.k.value(), modality=str(point["modality"]), target="all"
        )
        self.hits_title.setText(f"neighbours of {point['id']} ({point['modality']})")
        self._show_hits(hits)

    def _show_hits(self, hits: pd.DataFrame) -> None:
        self.hits.clear()
        for _, hit in hits.iterrows():
            self.hits.addItem(f"{hit['score']:.3f}  {hit['id']} · {hit['modality']} · {hit['label']}")
        self.scatter.set_highlight(hits["point"].to_numpy())

    # --- search ----------------------------------------------------------------------------------
    def search(self, query: Any, kind: str | None = None) -> None:
        """Search with a text (or an image / audio file) in a worker; the hits are ringed on the scatter."""
        if self.explorer is None or (isinstance(query, str) and not query.strip()):
            return
        self.state.setText(f"searching {query!s}…")
        self.search_worker = start_worker(
            self.explorer.search,
            query,
            self.k.value(),
            kind=kind,
            on_result=self._searched,
            on_error=self._failed,
        )

    def _searched(self, hits: pd.DataFrame) -> None:
        self.search_worker = None
        self.hits_title.setText(f"search hits ({len(hits)})")
        self._show_hits(hits)
        self.state.setText(f"{len(hits)} hits ringed in pink")

    def _search_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Search with an image or a sound", "", "Media (*.png *.jpg *.jpeg *.wav *.flac *.ogg *.mp3)"
        )
        if path:
            self.query.setText(path)
            self.search(path)

    # --- selection and export --------------------------------------------------------------------
    def _lassoed(self, indices: np.ndarray) -> None:
        if self.explorer is not None:
            self.explorer.select_points(indices)

    def _show_selection(self, ids: Any) -> None:
        """Mirror the explorer's selection: outline its points and fill the grid."""
        import pandas as pd

        if self.explorer is None:
            return
        self.scatter.set_selection(self.explorer.selection_points())
        selected = self.explorer.selected_frame() if len(self.explorer.selection) else pd.DataFrame()
        rows = pd.DataFrame(
            {
                "key": selected.get("id", []),
                "id": selected.get("id", []),
                "caption": selected.get("text"),
                "label": selected.get("label"),
                "split": selected.get("split"),
            }
        )
        self.grid.set_frame(rows)
        self.selection_label.setText(f"{len(rows):,} rows selected" if len(rows) else "nothing selected")

    def _export_clicked(self) -> None:
        fmt = self.format.currentText()
        if fmt == "tag":
            from PySide6.QtWidgets import QInputDialog

            path, ok = QInputDialog.getText(self, "Tag the selection", "Lance tag name")
        else:
            suffix = {"parquet": ".parquet", "csv": ".csv", "lance-filter": ".txt", "lance": ".lance"}[fmt]
            path, _ = QFileDialog.getSaveFileName(
                self, f"Export the selection as {fmt}", f"selection{suffix}"
            )
            ok = bool(path)
        if ok and path:
            self.export(path, fmt)

    def export(self, path: str, fmt: str = "parquet") -> str | None:
        """Write the selection with `Explorer.export_selection`; returns what it wrote (a path, a filter, a tag)."""
        try:
            written = self.explorer.export_selection(path, fmt)
        except Exception as exc:
            show_exception(self, exc)
            return None
        self.state.setText(f"exported {len(self.explorer.selection):,} rows: {written}")
        return written
