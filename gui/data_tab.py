"""The Data tab: open or create a dataset, its `data info` figures, and a filterable sample grid with playback."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from gui.errors import show_error
from gui.ingest_dialog import IngestDialog
from gui.sample_grid import ItemCard, SampleGrid
from gui.settings import Settings
from gui.workers import Worker, start_worker

if TYPE_CHECKING:
    from mmpt.explore import RowBrowser

ANY = "any"


def load_dataset(uri: str) -> tuple[RowBrowser, dict[str, Any], dict[str, Any] | None]:
    """Open a dataset for browsing; read its `data info` figures and last ingest report (runs in a worker)."""
    from mmpt.explore import RowBrowser

    browser = RowBrowser(uri)
    return browser, browser.dataset.stats(), browser.dataset.ingest_report()


def stats_html(stats: dict[str, Any]) -> str:
    """The figures of `mmpt data info` as a small HTML page."""

    def table(title: str, values: dict[str, Any], limit: int = 30) -> str:
        rows = "".join(
            f"<tr><td>{k}</td><td align='right'>{v:,}</td></tr>"
            if isinstance(v, int)
            else f"<tr><td>{k}</td><td>{v}</td></tr>"
            for k, v in list(values.items())[:limit]
        )
        more = f"<tr><td colspan=2>… {len(values) - limit} more</td></tr>" if len(values) > limit else ""
        return f"<h4>{title}</h4><table cellspacing=4>{rows}{more}</table>" if values else ""

    head = (
        f"<b>{stats.get('uri', '')}</b><br>{stats.get('rows', 0):,} rows · version {stats.get('version')} · "
        f"{stats.get('size_bytes', 0) / 1e6:,.1f} MB"
    )
    parts = [
        head,
        table("Modalities", stats.get("modalities", {})),
        table("Combinations", stats.get("combinations", {})),
        table("Splits", stats.get("splits", {})),
        table("Labels", stats.get("labels", {})),
        table("Embedding columns", {k: f"dim {v}" for k, v in stats.get("embedding_columns", {}).items()}),
        table("Projection columns", {k: "2-D" for k in stats.get("projection_columns", {})}),
        table(
            "Versions",
            {
                str(v["version"]): f"{v['rows']:,} rows, {v['timestamp'][:19]}"
                for v in stats.get("versions", [])
            },
        ),
    ]
    return "".join(parts)


def report_html(report: dict[str, Any] | None, limit: int = 50) -> str:
    """The last ingest's totals and its first bad rows (from `MmptDataset.ingest_report()`) as HTML."""
    if not report:
        return ""
    totals = report.get("totals", {})
    head = (
        f"<h4>Last ingest</h4>{html.escape(str(report.get('source', '')))} · "
        f"{html.escape(str(report.get('finished', '')))}<br>read {totals.get('read', 0):,}, "
        f"written {totals.get('written', 0):,}, rejected {totals.get('rejected', 0):,}"
    )
    bad = report.get("rejected", [])
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(r.get(k) or ''))}</td>" for k in ("row", "id", "file", "reason"))
        + "</tr>"
        for r in bad[:limit]
    )
    more = f"<tr><td colspan=4>… {len(bad) - limit} more</td></tr>" if len(bad) > limit else ""
    return head + (f"<table cellspacing=4>{rows}{more}</table>" if rows else "")


class DataTab(QWidget):
    """Open a dataset (or ingest one) and browse it; emits `opened(uri)` when a dataset is loaded.

    Filtering, counting and reading rows are the core's `mmpt.explore.RowBrowser` (`self.browser`); the tab
    only passes the filter widgets' values to it and shows what it returns.
    """

    opened = Signal(str)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.dataset: Any = None
        self.browser: RowBrowser | None = None
        self.stats: dict[str, Any] = {}
        self.report: dict[str, Any] | None = None
        self._positions = np.arange(0, dtype=np.int64)
        self.worker: Worker | None = None
        self.path = QComboBox(editable=True)
        self.path.setObjectName("datasetPath")
        self.path.setMinimumWidth(360)
        self.path.addItems(settings.recent("datasets"))
        self.path.lineEdit().returnPressed.connect(lambda: self.open(self.path.currentText()))
        browse = QPushButton("Open…")
        browse.clicked.connect(self._browse)
        new = QPushButton("New from files…")
        new.setObjectName("newDataset")
        new.clicked.connect(self.show_ingest)
        top = QHBoxLayout()
        top.addWidget(QLabel("Dataset"))
        top.addWidget(self.path, 1)
        top.addWidget(browse)
        top.addWidget(new)

        self.info = QTextBrowser()
        self.info.setObjectName("datasetInfo")
        self.info.setPlaceholderText("open a dataset to see its figures")
        self.split = QComboBox(objectName="filterSplit")
        self.label = QComboBox(objectName="filterLabel")
        self.modality = QComboBox(objectName="filterModality")
        self.modality.addItems([ANY, "image", "text", "audio"])  # RowBrowser.MODALITIES (imported lazily)
        self.text = QLineEdit(placeholderText="filter captions and ids", objectName="filterText")
        for combo in (self.split, self.label, self.modality):
            combo.currentTextChanged.connect(self.apply_filter)
        self.text.textChanged.connect(self.apply_filter)
        filters = QHBoxLayout()
        for name, widget in (("Split", self.split), ("Label", self.label), ("Modality", self.modality)):
            filters.addWidget(QLabel(name))
            filters.addWidget(widget)
        filters.addWidget(self.text, 1)
        self.count = QLabel(objectName="gridCount")
        filters.addWidget(self.count)
        self.grid = SampleGrid(lambda rows: self.browser.thumbnails(rows) if self.browser is not None else {})
        self.grid.setObjectName("dataGrid")
        self.grid.chosen.connect(self.show_row)
        self.card = ItemCard()
        self.card.setMinimumWidth(250)

        middle = QWidget()
        mid_layout = QVBoxLayout(middle)
        mid_layout.setContentsMargins(0, 0, 0, 0)
        mid_layout.addLayout(filters)
        mid_layout.addWidget(self.grid, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.info)
        split.addWidget(middle)
        split.addWidget(self.card)
        split.setSizes([270, 700, 270])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)

    # --- opening ---------------------------------------------------------------------------------
    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Lance dataset folder (*.lance)")
        if path:
            self.open(path)

    def show_ingest(self) -> IngestDialog:
        """Open the ingest wizard; a dataset it writes is opened here."""
        dialog = IngestDialog(self)
        dialog.ingested.connect(self.open)
        dialog.show()
        return dialog

    def open(self, uri: str) -> None:
        """Load a dataset in a worker; errors show a dialog."""
        uri = uri.strip()
        if not uri:
            return
        self.info.setHtml(f"opening {uri}…")
        self.worker = start_worker(
            load_dataset,
            uri,
            on_result=self._loaded,
            on_error=lambda reason, details: self._failed(uri, reason, details),
        )

    def _failed(self, uri: str, reason: str, details: str) -> None:
        self.worker = None
        self.info.setHtml(f"could not open {uri}")
        show_error(self, reason, details)

    def _loaded(self, loaded: tuple[RowBrowser, dict[str, Any], dict[str, Any] | None]) -> None:
        self.worker = None
        self.browser, self.stats, self.report = loaded
        self.dataset = self.browser.dataset
        uri = str(self.dataset.uri)
        self.settings.add_recent("datasets", uri)
        self.path.blockSignals(True)
        self.path.clear()
        self.path.addItems(self.settings.recent("datasets"))
        self.path.setCurrentText(uri)
        self.path.blockSignals(False)
        self.info.setHtml(stats_html(self.stats) + report_html(self.report))
        for combo, column in ((self.split, "split"), (self.label, "label")):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([ANY, *self.browser.choices(column)])
            combo.blockSignals(False)
        self.apply_filter()
        self.opened.emit(uri)

    # --- browsing --------------------------------------------------------------------------------
    def _value(self, combo: QComboBox) -> str | None:
        text = combo.currentText()
        return None if text in ("", ANY) else text

    def positions(self) -> np.ndarray:
        """Row positions passing the split, label, modality and text filters (as of the last refresh)."""
        return self._positions

    def apply_filter(self, *_: object) -> None:
        """Refresh the grid from the filters."""
        import pandas as pd

        if self.browser is None:
            return
        self._positions = self.browser.filter(
            split=self._value(self.split),
            label=self._value(self.label),
            modality=self._value(self.modality),
            text=self.text.text(),
        )
        rows = self.browser.rows(self._positions)
        view = pd.DataFrame(
            {
                "key": rows.index.to_numpy(),
                "id": rows["id"].to_numpy(),
                "caption": rows["text"].to_numpy(),
                "label": rows["label"].to_numpy(),
                "split": rows["split"].to_numpy(),
            }
        )
        self.grid.set_frame(view)
        self.count.setText(self.browser.summary(self._positions))

    def show_row(self, row: int) -> None:
        """Show one dataset row in the item card."""
        if self.browser is None:
            return
        try:
            self.card.show_item(self.browser.item(int(row)))
        except Exception as exc:  # a row that fails to read becomes a dialog, not a crash
            from gui.errors import show_exception

            show_exception(self, exc)
