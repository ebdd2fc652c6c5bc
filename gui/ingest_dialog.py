"""The ingest wizard: a folder or manifest, its column mapping and options, progress, then the bad-rows report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
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
from gui.workers import Worker, start_worker

ROLES = ("id", "text", "image", "audio", "label", "split")


def run_ingest(source: str, out: str, options: dict[str, Any]) -> Any:
    """`mmpt.ingest(source, out, ...)` with the wizard's options (runs in a worker thread)."""
    import mmpt

    return mmpt.ingest(source, out, quiet=True, **options)


class IngestDialog(QDialog):
    """Create (or append to) a dataset with `mmpt.ingest`; emits `ingested(uri)` when a dataset was written."""

    ingested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New dataset from files")
        self.setObjectName("ingestDialog")
        self.resize(640, 560)
        self.source = QLineEdit(placeholderText="a folder tree or a manifest (CSV, JSONL, Parquet)")
        self.out = QLineEdit(placeholderText="where to write the dataset, e.g. data/corpus.lance")
        pick_folder = QPushButton("Folder…")
        pick_folder.clicked.connect(self._pick_folder)
        pick_file = QPushButton("Manifest…")
        pick_file.clicked.connect(self._pick_manifest)
        source_row = QHBoxLayout()
        source_row.addWidget(self.source, 1)
        source_row.addWidget(pick_folder)
        source_row.addWidget(pick_file)
        form = QFormLayout()
        form.addRow("Source", source_row)
        form.addRow("Output", self.out)
        self.columns = {role: QLineEdit(placeholderText=f"default: '{role}' column") for role in ROLES}
        for role, edit in self.columns.items():
            edit.setObjectName(f"col_{role}")
            form.addRow(f"{role.capitalize()} column", edit)
        self.ratios = QLineEdit(placeholderText="e.g. 0.8,0.1,0.1 for rows without a split")
        form.addRow("Split ratios", self.ratios)
        self.append = QCheckBox("Append to an existing dataset")
        self.overwrite = QCheckBox("Overwrite an existing dataset")
        self.strict = QCheckBox("Strict: stop at the first bad row and write nothing")
        for box in (self.append, self.overwrite, self.strict):
            form.addRow("", box)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.state = QLabel()
        self.report = QPlainTextEdit(readOnly=True)
        self.report.setObjectName("ingestReport")
        self.report.setPlaceholderText(
            "the summary and every rejected row (with the file that failed) show here"
        )
        self.buttons = QDialogButtonBox()
        self.run_button = self.buttons.addButton("Ingest", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.state)
        layout.addWidget(self.report, 1)
        layout.addWidget(self.buttons)
        self.worker: Worker | None = None
        self.result: Any = None
        self._started = 0.0
        self._clock = QTimer(self, interval=200)
        self._clock.timeout.connect(self._tick)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of media files")
        if path:
            self.source.setText(path)

    def _pick_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Manifest", "", "Manifests (*.csv *.tsv *.jsonl *.parquet)"
        )
        if path:
            self.source.setText(path)

    def options(self) -> dict[str, Any]:
        """The keyword arguments for mmpt.ingest from the form (empty fields keep mmpt's defaults)."""
        opts: dict[str, Any] = {
            f"{role}_col": edit.text().strip() for role, edit in self.columns.items() if edit.text().strip()
        }
        if self.ratios.text().strip():
            opts["split_ratios"] = self.ratios.text().strip()
        opts.update(
            append=self.append.isChecked(),
            overwrite=self.overwrite.isChecked(),
            strict=self.strict.isChecked(),
        )
        return opts

    def start(self) -> None:
        """Validate the form and run the ingest in a worker."""
        source, out = self.source.text().strip(), self.out.text().strip()
        if not source or not out:
            show_error(self, "choose a source and an output path")
            return
        if not out.endswith(".lance") and not Path(out).exists():
            out += ".lance"
            self.out.setText(out)
        self.run_button.setEnabled(False)
        self.progress.setRange(0, 0)  # mmpt.ingest reports no progress while it runs: a busy bar
        self.report.clear()
        self._started = time.monotonic()
        self._clock.start()
        self.worker = start_worker(
            run_ingest, source, out, self.options(), on_result=self._done, on_error=self._failed
        )

    def _tick(self) -> None:
        self.state.setText(f"ingesting… {time.monotonic() - self._started:.0f} s")

    def _finish(self) -> None:
        self._clock.stop()
        self.worker = None
        self.progress.setRange(0, 1)
        self.run_button.setEnabled(True)

    def _done(self, result: Any) -> None:
        self._finish()
        self.progress.setValue(1)
        self.result = result
        self.state.setText(f"done: {result.written:,} of {result.read:,} rows written")
        self.report.setPlainText(result.summary(limit=None))
        self.ingested.emit(str(result.dataset.uri))

    def _failed(self, reason: str, details: str) -> None:
        self._finish()
        self.state.setText("failed")
        self.report.setPlainText(reason)
        show_error(self, reason, details)
