"""A virtualised sample grid (thumbnails, spectrogram strips, captions) and an item card with an audio player.

The grid's model holds a small table (key, id, caption, label, split); thumbnails are fetched in batches off the
GUI thread for the rows the view actually paints, through a `loader(keys) -> {key: (image_png, spectrogram_png)}`
that the tab supplies from mmpt.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import QLabel, QListView, QSizePolicy, QVBoxLayout, QWidget

from gui.audio import AudioPlayer
from gui.media import pixmap, thumbnail_pair
from gui.workers import Worker, start_worker

if TYPE_CHECKING:
    import pandas as pd

THUMB = QSize(112, 112)
BATCH = 48
PREFETCH = 60
Loader = Callable[[list[Hashable]], dict[Hashable, tuple[bytes | None, bytes | None]]]


class SampleModel(QAbstractListModel):
    """Rows of a table as grid items; thumbnails load lazily in a worker, a batch at a time."""

    KeyRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, loader: Loader, parent: Any = None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.frame: pd.DataFrame | None = None
        self._keys: list[Hashable] = []
        self._thumbs: dict[Hashable, QPixmap] = {}
        self._pending: dict[Hashable, None] = {}
        self._worker: Worker | None = None
        self.error: str | None = None  # why the last batch of thumbnails failed, if it did
        self._placeholder = QPixmap(THUMB)
        self._placeholder.fill(QColor("#eeeeee"))

    def set_frame(self, frame: pd.DataFrame) -> None:
        """Show these rows (columns key, id, caption, label, split); cached thumbnails are kept."""
        self.beginResetModel()
        self.frame = frame.reset_index(drop=True)
        self._keys = list(self.frame["key"])
        self._pending.clear()
        self.endResetModel()
        for key in self._keys[:PREFETCH]:  # the first screenful loads at once, before the view paints
            if key not in self._thumbs:
                self._request(key)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        return 0 if parent.isValid() else len(self._keys)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._keys):
            return None
        key = self._keys[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            thumb = self._thumbs.get(key)
            if thumb is None:
                self._request(key)
                return self._placeholder
            return thumb
        row = self.frame.iloc[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            label = row.get("label")
            return f"{row['id']}\n{label}" if isinstance(label, str) and label else str(row["id"])
        if role == Qt.ItemDataRole.ToolTipRole:
            caption = row.get("caption")
            return caption if isinstance(caption, str) else None
        if role == self.KeyRole:
            return key
        return None

    def key_at(self, row: int) -> Hashable:
        """The key of the item at a grid position."""
        return self._keys[row]

    def _request(self, key: Hashable) -> None:
        self._pending[key] = None
        if self._worker is None:
            batch = list(self._pending)[:BATCH]
            for k in batch:
                self._pending.pop(k, None)
            self._worker = start_worker(self.loader, batch, on_result=self._loaded, on_error=self._failed)

    def _loaded(self, media: dict[Hashable, tuple[bytes | None, bytes | None]]) -> None:
        for key, (image_png, spectrogram_png) in media.items():
            canvas: QImage = thumbnail_pair(image_png, spectrogram_png, THUMB)
            self._thumbs[key] = QPixmap.fromImage(canvas)
        if self._keys:
            self.dataChanged.emit(
                self.index(0), self.index(len(self._keys) - 1), [Qt.ItemDataRole.DecorationRole]
            )
        self._done()

    def _failed(self, reason: str, details: str) -> None:
        """A batch that failed to load stays blank; the reason is kept for tests and the status line."""
        self.error = reason
        self._done()

    def _done(self) -> None:
        self._worker = None
        if self._pending:
            self._request(next(iter(self._pending)))

    def loading(self) -> bool:
        """Whether thumbnails are still being fetched."""
        return self._worker is not None or bool(self._pending)


class SampleGrid(QListView):
    """The grid view: icons with id and label, only visible items are painted (and so loaded)."""

    chosen = Signal(object)  # key of the current item

    def __init__(self, loader: Loader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.samples = SampleModel(loader, self)
        self.setModel(self.samples)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(THUMB)
        self.setGridSize(QSize(THUMB.width() + 24, THUMB.height() + 44))
        self.setUniformItemSizes(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setWordWrap(True)
        self.setSpacing(4)
        self.selectionModel().currentChanged.connect(
            lambda current, _prev: (
                self.chosen.emit(self.samples.key_at(current.row())) if current.isValid() else None
            )
        )

    def set_frame(self, frame: pd.DataFrame) -> None:
        """Show these rows."""
        self.samples.set_frame(frame)

    def count(self) -> int:
        """Items shown."""
        return self.samples.rowCount()


class ItemCard(QWidget):
    """One sample in full: image, spectrogram, caption, label and split, and an audio player."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("nothing selected")
        self.title.setObjectName("itemTitle")
        self.title.setWordWrap(True)
        self.image = QLabel()
        self.image.setMinimumSize(160, 160)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.spectrogram = QLabel()
        self.spectrogram.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption = QLabel()
        self.caption.setObjectName("itemCaption")
        self.caption.setWordWrap(True)
        self.caption.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.player = AudioPlayer()
        layout = QVBoxLayout(self)
        for widget in (self.title, self.image, self.spectrogram, self.caption, self.player):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.item: Any = None

    def show_item(self, item: Any) -> None:
        """Show an mmpt item (id, modality, label, split, caption, image_png, spectrogram_png, audio_wav, note)."""
        self.item = item
        if item is None:
            self.title.setText("nothing selected")
            for label in (self.image, self.spectrogram, self.caption):
                label.clear()
            self.player.set_clip(None)
            return
        meta = " · ".join(str(v) for v in (getattr(item, "modality", None), item.label, item.split) if v)
        self.title.setText(f"<b>{item.id}</b><br><small>{meta}</small>")
        self.image.setPixmap(pixmap(item.image_png, QSize(220, 220)))
        self.spectrogram.setPixmap(pixmap(item.spectrogram_png, QSize(220, 90)))
        text = item.caption or ""
        if getattr(item, "note", None):
            text += f"\n({item.note})"
        self.caption.setText(text)
        self.player.set_clip(item.audio_wav, title=f"{item.id} audio")
