"""The Export tab: a run's embeddings of a dataset to parquet, npy or Lance, as an `mmpt embed` job with progress."""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.errors import show_error
from gui.job_monitor import JobMonitor
from gui.workers import Worker, start_worker

FORMATS = ("parquet", "npy", "lance")
PERCENT = re.compile(r"(\d{1,3})%\|")  # a tqdm bar in the job's log: the embed verb logs no progress events


def start_embed(run: str, data: str, fmt: str, path: str, device: str) -> Any:
    """`mmpt.jobs.start("embed", run, data=..., to=fmt, path=path)`: embedding columns plus an export file."""
    import mmpt.jobs

    return mmpt.jobs.start("embed", run, data=data, to=fmt, path=path, device=device)


def log_fraction(lines: list[str]) -> float | None:
    """The last progress percentage in an embed job's log tail, as a fraction (None when there is none)."""
    for line in reversed(lines):
        found = PERCENT.findall(line)
        if found:
            return int(found[-1]) / 100.0
    return None


class ExportTab(QWidget):
    """Run + dataset + format + path -> an embed job, followed until it ends."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = QLineEdit(objectName="exportRun", placeholderText="run folder")
        self.data = QLineEdit(objectName="exportData", placeholderText="dataset")
        self.format = QComboBox(objectName="exportFormat")
        self.format.addItems(FORMATS)
        self.format.currentTextChanged.connect(self._suggest)
        self.path = QLineEdit(objectName="exportPath", placeholderText="output file or folder")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Run", self.run)
        form.addRow("Dataset", self.data)
        form.addRow("Format", self.format)
        form.addRow("Output", path_row)
        form.addRow("Device", self.device)
        self.start_button = QPushButton("Export embeddings", objectName="exportStart")
        self.start_button.clicked.connect(self.start)
        self.bar = QProgressBar(objectName="exportProgress")
        self.state = QLabel("", objectName="exportState")
        self.log = QPlainTextEdit(readOnly=True, objectName="exportLog")
        self.log.setPlaceholderText(
            "writes emb_<run>_<modality> columns into the dataset (resumable), then the "
            "file; the mmpt embed job's output shows here"
        )
        form_box = QWidget()
        form_box.setLayout(form)
        form_box.setMaximumWidth(820)
        layout = QVBoxLayout(self)
        layout.addWidget(form_box)
        self.start_button.setMaximumWidth(260)
        layout.addWidget(self.start_button)
        layout.addWidget(self.bar)
        layout.addWidget(self.state)
        layout.addWidget(self.log, 1)
        self.monitor: JobMonitor | None = None
        self.worker: Worker | None = None

    def set_sources(self, run: str | None = None, data: str | None = None) -> None:
        """Pre-fill the run and dataset (the window does this when they change elsewhere)."""
        if run:
            self.run.setText(run)
        if data:
            self.data.setText(data)
        self._suggest(self.format.currentText())

    def _suggest(self, fmt: str) -> None:
        run = self.run.text().strip().rstrip("/")
        if run and not self.path.isModified():
            suffix = {"parquet": ".parquet", "npy": "", "lance": ".lance"}[fmt]
            self.path.setText(f"{run}/export/embeddings{suffix}")

    def _browse(self) -> None:
        if self.format.currentText() == "parquet":
            path, _ = QFileDialog.getSaveFileName(
                self, "Parquet file", self.path.text(), "Parquet (*.parquet)"
            )
        else:
            path = QFileDialog.getExistingDirectory(self, "Output folder")
        if path:
            self.path.setText(path)
            self.path.setModified(True)

    def start(self) -> None:
        """Start the embed job."""
        run, data, path = self.run.text().strip(), self.data.text().strip(), self.path.text().strip()
        if not run or not data or not path:
            show_error(self, "choose a run, a dataset and an output path")
            return
        self.start_button.setEnabled(False)
        self.bar.setRange(0, 0)
        self.state.setText("starting…")
        self.worker = start_worker(
            start_embed,
            run,
            data,
            self.format.currentText(),
            path,
            self.device.currentText(),
            on_result=self._follow,
            on_error=self._failed,
        )

    def _failed(self, reason: str, details: str) -> None:
        self.worker = None
        self.start_button.setEnabled(True)
        self.bar.setRange(0, 1)
        self.state.setText("failed")
        show_error(self, reason, details)

    def _follow(self, job: Any) -> None:
        self.worker = None
        self.monitor = JobMonitor(job, self)
        self.monitor.log.connect(self._log)
        self.monitor.ended.connect(self._ended)
        self.monitor.failed.connect(self._failed)
        self.state.setText(f"embedding with {job.run}…")
        self.monitor.poll()

    def _log(self, lines: list[str]) -> None:
        self.log.setPlainText("\n".join(lines))
        fraction = log_fraction(lines)
        if fraction is not None:
            self.bar.setRange(0, 100)
            self.bar.setValue(int(fraction * 100))

    def _ended(self, status: dict[str, Any]) -> None:
        self.start_button.setEnabled(True)
        self.bar.setRange(0, 100)
        state = status.get("state")
        if state == "finished":
            self.bar.setValue(100)
            self.state.setText(f"done: {self.path.text()}")
        else:
            reason = status.get("error") or status.get("reason") or state
            self.state.setText(f"{state}: {reason}")
            show_error(self, f"the export {state}: {reason}", "\n".join(status.get("log_tail", [])))
