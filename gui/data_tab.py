"""The Data tab: open or create a dataset, its `data info` figures, and a filterable sample grid with playback."""

from __future__ import annotations

from collections.abc import Hashable
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
    import pandas as pd

META_COLUMNS = ["id", "text", "label", "split", "image_sha256", "audio_sha256"]
ANY = "any"


def load_dataset(uri: str) -> tuple[Any, dict[str, Any], pd.DataFrame]:
    """Open a dataset, read its stats and the small columns the grid filters on (runs in a worker)."""
    import mmpt

    ds = mmpt.open_dataset(uri)
    stats = ds.stats()
    names = [c for c in META_COLUMNS if c in ds.schema.names]
    frame = ds.lance.to_table(columns=names).to_pandas()
    frame.insert(0, "row", np.arange(len(frame), dtype=np.int64))
    return ds, stats, frame


def dataset_thumbnails(ds: Any, rows: list[Hashable]) -> dict[Hashable, tuple[bytes | None, bytes | None]]:
    """Image thumbnails and spectrogram strips for dataset rows (a worker calls this for the grid)."""
    from mmpt.explore.media import read_clip, spectrogram_png, thumbnail_png

    images = ds.read_blobs("image", rows) if "image" in ds.schema.names else [None] * len(rows)
    audios = ds.read_blobs("audio", rows) if "audio" in ds.schema.names else [None] * len(rows)
    out: dict[Hashable, tuple[bytes | None, bytes | None]] = {}
    for row, image, audio in zip(rows, images, audios, strict=True):
        try:
            thumb = thumbnail_png(image) if image else None
        except Exception:  # an undecodable image shows as a blank tile; the card says why
            thumb = None
        try:
            spec = spectrogram_png(*read_clip(audio)) if audio else None
        except Exception:
            spec = None
        out[row] = (thumb, spec)
    return out


def dataset_item(ds: Any, frame: pd.DataFrame, row: int) -> Any:
    """The item card content of one dataset row (image, clip, spectrogram, caption, label)."""
    from mmpt.explore.media import build_item

    meta = frame.iloc[row]
    image = ds.read_blobs("image", [row])[0] if "image" in ds.schema.names else None
    audio = ds.read_blobs("audio", [row])[0] if "audio" in ds.schema.names else None
    text = meta.get("text")
    return build_item(
        {
            "id": str(meta["id"]),
            "modality": None,
            "row": int(row),
            "label": meta.get("label"),
            "split": meta.get("split"),
            "caption": text if isinstance(text, str) else None,
        },
        image,
        audio,
    )


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


class DataTab(QWidget):
    """Open a dataset (or ingest one) and browse it; emits `opened(uri)` when a dataset is loaded."""

    opened = Signal(str)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.dataset: Any = None
        self.stats: dict[str, Any] = {}
        self.frame: pd.DataFrame | None = None
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
        self.modality.addItems([ANY, "image", "text", "audio"])
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
        self.grid = SampleGrid(lambda rows: dataset_thumbnails(self.dataset, rows))
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

    def _loaded(self, loaded: tuple[Any, dict[str, Any], pd.DataFrame]) -> None:
        self.worker = None
        self.dataset, self.stats, frame = loaded
        self.frame = frame
        uri = str(self.dataset.uri)
        self.settings.add_recent("datasets", uri)
        self.path.blockSignals(True)
        self.path.clear()
        self.path.addItems(self.settings.recent("datasets"))
        self.path.setCurrentText(uri)
        self.path.blockSignals(False)
        self.info.setHtml(stats_html(self.stats))
        for combo, column in ((self.split, "split"), (self.label, "label")):
            combo.blockSignals(True)
            combo.clear()
            values = sorted(v for v in frame[column].dropna().unique()) if column in frame else []
            combo.addItems([ANY, *map(str, values)])
            combo.blockSignals(False)
        self.apply_filter()
        self.opened.emit(uri)

    # --- browsing --------------------------------------------------------------------------------
    def filtered(self) -> pd.DataFrame:
        """The rows passing the split, label, modality and text filters."""
        import pandas as pd

        f = self.frame
        if f is None or f.empty:
            return f
        keep = np.ones(len(f), dtype=bool)
        if self.split.currentText() not in ("", ANY):
            keep &= (f["split"] == self.split.currentText()).to_numpy()
        if self.label.currentText() not in ("", ANY):
            keep &= (f["label"] == self.label.currentText()).to_numpy()
        modality = self.modality.currentText()
        if modality != ANY:
            column = "text" if modality == "text" else f"{modality}_sha256"
            keep &= f[column].notna().to_numpy() if column in f else False
        needle = self.text.text().strip().lower()
        if needle:
            hay = (
                f["id"].astype(str).str.lower()
                + " "
                + f.get("text", pd.Series("", index=f.index)).fillna("").str.lower()
            )
            keep &= hay.str.contains(needle, regex=False).to_numpy()
        return f[keep]

    def apply_filter(self, *_: object) -> None:
        """Refresh the grid from the filters."""
        import pandas as pd

        if self.frame is None:
            return
        rows = self.filtered()
        view = pd.DataFrame(
            {
                "key": rows["row"] if "row" in rows else [],
                "id": rows.get("id"),
                "caption": rows.get("text"),
                "label": rows.get("label"),
                "split": rows.get("split"),
            }
        )
        self.grid.set_frame(view)
        self.count.setText(f"{len(rows):,} of {len(self.frame):,} rows")

    def show_row(self, row: int) -> None:
        """Show one dataset row in the item card."""
        try:
            self.card.show_item(dataset_item(self.dataset, self.frame, int(row)))
        except Exception as exc:  # a row that fails to read becomes a dialog, not a crash
            from gui.errors import show_exception

            show_exception(self, exc)
