"""The runs table (`mmpt.runs.list_runs`) with a curve overlay to compare the selected runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.curves import CurvePlot
from gui.errors import show_exception

if TYPE_CHECKING:
    import pandas as pd

SHOWN = ["name", "kind", "status", "model", "step", "total_steps", "best_metric", "started", "duration_s"]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value) or str(value) == "NaT":
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


class RunsPanel(QWidget):
    """Lists the runs under a folder; the selected ones' loss curves are overlaid; emits `follow(path)`/`explore`."""

    follow = Signal(str)
    explore = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.root = QLineEdit(objectName="runsRoot", placeholderText="folder holding run folders")
        self.root.returnPressed.connect(self.refresh)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        follow = QPushButton("Follow")
        follow.setToolTip("follow the selected run in the monitor (re-attach to a running job)")
        follow.clicked.connect(lambda: self._emit(self.follow))
        explore = QPushButton("Explore")
        explore.clicked.connect(lambda: self._emit(self.explore))
        top = QHBoxLayout()
        for w in (self.root, refresh, follow, explore):
            top.addWidget(w, 1 if w is self.root else 0)
        self.table = QTableWidget(0, len(SHOWN), objectName="runsTable")
        self.table.setHorizontalHeaderLabels(SHOWN)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self.overlay)
        self.compare = CurvePlot("train loss of the selected runs")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.compare)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.frame: pd.DataFrame | None = None

    def set_root(self, root: str | Path) -> None:
        """Show the runs under `root`."""
        self.root.setText(str(root))
        self.refresh()

    def refresh(self) -> None:
        """Re-read the run history."""
        from mmpt.runs import list_runs

        root = self.root.text().strip()
        if not root or not Path(root).is_dir():
            return
        try:
            self.frame = list_runs(root)
        except Exception as exc:  # an unreadable folder is a dialog
            show_exception(self, exc)
            return
        self.table.setRowCount(len(self.frame))
        for r, row in self.frame.iterrows():
            for c, column in enumerate(SHOWN):
                self.table.setItem(int(r), c, QTableWidgetItem(_cell(row.get(column))))
        self.table.resizeColumnsToContents()

    def selected_paths(self) -> list[str]:
        """Paths of the selected runs."""
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        if self.frame is None:
            return []
        return [str(self.frame.iloc[r]["path"]) for r in rows if r < len(self.frame)]

    def overlay(self) -> None:
        """Overlay the train loss of every selected run."""
        from mmpt.runs import RunDir

        self.compare.clear_curves()
        for path in self.selected_paths():
            events = [e for e in RunDir(path).metrics("train") if "loss" in e]
            self.compare.add_events(
                [{"kind": "train", "step": e["step"], "loss": e["loss"]} for e in events],
                prefix=f"{Path(path).name} ",
            )

    def _emit(self, signal: Signal) -> None:
        paths = self.selected_paths()
        if paths:
            signal.emit(paths[0])
