"""The main window: Data, Train, Explore and Export tabs, settings that persist, and a careful close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QTabWidget

from gui.data_tab import DataTab
from gui.errors import close_dialogs
from gui.explore_tab import ExploreTab
from gui.export_tab import ExportTab
from gui.settings import Settings
from gui.train_tab import TrainTab

TABS = ("Data", "Train", "Explore", "Export")


def running_runs(paths: list[str]) -> list[str]:
    """The runs among `paths` whose job is still running (to re-attach at start)."""
    from mmpt.runs import run_status

    out = []
    for path in paths:
        try:
            if Path(path).is_dir() and run_status(path)["state"] == "running":
                out.append(path)
        except Exception:  # a half-deleted folder is simply not running
            continue
    return out


class MainWindow(QMainWindow):
    """The app's one window; every tab is a view of mmpt objects (datasets, jobs, explorers)."""

    def __init__(
        self,
        settings: Settings | None = None,
        dataset: str | None = None,
        run: str | None = None,
        reattach: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.setWindowTitle("mmpt")
        self.tabs = QTabWidget(objectName="tabs")
        self.data_tab = DataTab(self.settings)
        self.train_tab = TrainTab(self.settings)
        self.explore_tab = ExploreTab(self.settings)
        self.export_tab = ExportTab()
        for tab, name in zip(
            (self.data_tab, self.train_tab, self.explore_tab, self.export_tab), TABS, strict=True
        ):
            self.tabs.addTab(tab, name)
        self.setCentralWidget(self.tabs)
        self.close_choice: str | None = (
            None  # "stop" / "leave": answer the close question without asking (tests)
        )
        self._menus()

        self.data_tab.opened.connect(self._dataset_opened)
        self.train_tab.run_followed.connect(self._run_followed)
        self.train_tab.explore_run.connect(self.explore)
        self.statusBar().showMessage("ready")
        geometry = self.settings.geometry("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 820)
        self.tabs.setCurrentIndex(int(self.settings.get("window/tab", 0) or 0))
        self.tabs.currentChanged.connect(lambda i: self.settings.set("window/tab", i))

        dataset = dataset or next(iter(p for p in self.settings.recent("datasets") if Path(p).exists()), None)
        if dataset:
            self.data_tab.open(dataset)
        if run:
            self.train_tab.attach(run)
            if dataset:
                self.explore(run, dataset)
        elif reattach:
            live = running_runs(self.settings.recent("runs"))
            if live:
                self.train_tab.attach(live[0])
                self.statusBar().showMessage(f"re-attached to the running job in {live[0]}")

    def _menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        for text, slot, key in (
            ("Open dataset…", self.data_tab._browse, QKeySequence.StandardKey.Open),
            ("New dataset from files…", self.data_tab.show_ingest, None),
            ("Quit", self.close, QKeySequence.StandardKey.Quit),
        ):
            action = QAction(text, self)
            if key is not None:
                action.setShortcut(key)
            action.triggered.connect(slot)
            menu.addAction(action)

    def _dataset_opened(self, uri: str) -> None:
        if not self.train_tab.form.data.text():
            self.train_tab.form.data.setText(uri)
        self.explore_tab.dataset.setText(uri)
        self.export_tab.set_sources(data=uri)
        self.statusBar().showMessage(f"dataset {uri}")

    def _run_followed(self, run: str) -> None:
        self.explore_tab.run.setCurrentText(run)
        self.export_tab.set_sources(run=run)

    def explore(self, run: str, dataset: str | None = None) -> None:
        """Open the Explore tab on a run (and the current dataset unless one is given)."""
        dataset = dataset or self.explore_tab.dataset.text() or self.train_tab.form.data.text()
        self.tabs.setCurrentWidget(self.explore_tab)
        self.explore_tab.open(dataset, run)

    def ask_running_job(self, job: Any) -> str:
        """Ask what to do with a running job at close: 'stop', 'leave' or 'cancel'."""
        if self.close_choice is not None:
            return self.close_choice
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "A job is running",
            f"The {job.kind} job in {job.run} is still running.",
            parent=self,
        )
        box.setInformativeText(
            "Stop it (it saves a checkpoint), or leave it running and follow it again "
            "the next time the app starts?"
        )
        stop = box.addButton("Stop it", QMessageBox.ButtonRole.DestructiveRole)
        leave = box.addButton("Leave running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return (
            "stop" if box.clickedButton() is stop else "leave" if box.clickedButton() is leave else "cancel"
        )

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """Ask about a running job, save the layout, stop polling; workers are awaited on aboutToQuit."""
        job = self.train_tab.running_job()
        if job is not None:
            choice = self.ask_running_job(job)
            if choice == "cancel":
                event.ignore()
                return
            if choice == "stop":
                QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
                try:
                    job.stop()
                finally:
                    QApplication.restoreOverrideCursor()
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.sync()
        self.train_tab.close_monitor()
        self.explore_tab.close_explorer()
        self.explore_tab.card.player.stop()
        self.data_tab.card.player.stop()
        close_dialogs()
        super().closeEvent(event)
