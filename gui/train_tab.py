"""The Train tab: start / stop / resume a pretrain or fine-tune job, watch it live, compare runs.

Jobs are `mmpt.jobs` child processes that own their run folder; this tab only starts them, follows their files
through a JobMonitor and signals them. A job outlives the window; `attach(run)` follows it again later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.curves import CurvePlot
from gui.errors import show_error
from gui.job_monitor import JobMonitor
from gui.runs_panel import RunsPanel
from gui.settings import Settings
from gui.train_form import TrainForm
from gui.workers import Worker, start_worker


def format_eta(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s' or '–'."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def start_job(kind: str, run: str, config: dict[str, Any]) -> Any:
    """`mmpt.jobs.start(kind, run, **config)` (in a worker: it imports the verb to check the flags)."""
    import mmpt.jobs

    return mmpt.jobs.start(kind, run, **config)


def attach_job(run: str) -> Any:
    """`mmpt.jobs.attach(run)`."""
    import mmpt.jobs

    return mmpt.jobs.attach(run)


def resume_job(job: Any) -> Any:
    """`job.resume()`: a new job continuing the run from its latest checkpoint."""
    return job.resume()


class TrainTab(QWidget):
    """Config form, Start/Stop/Resume, progress, live curves, log tail, checkpoints and the runs table."""

    run_followed = Signal(str)  # a run is being followed (the window remembers it)
    explore_run = Signal(str)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.monitor: JobMonitor | None = None
        self.worker: Worker | None = None
        self.form = TrainForm(settings)
        self.start_button = QPushButton("Start", objectName="startButton")
        self.stop_button = QPushButton("Stop", objectName="stopButton", enabled=False)
        self.resume_button = QPushButton("Resume", objectName="resumeButton", enabled=False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.form)
        left_layout.addLayout(buttons)
        left_layout.addStretch(1)

        self.title = QLabel("no job", objectName="jobTitle")
        self.bar = QProgressBar(objectName="jobProgress")
        self.figures = QLabel("", objectName="jobFigures")
        self.curves = CurvePlot("loss")
        self.curves.setObjectName("lossCurves")
        self.log = QPlainTextEdit(readOnly=True, objectName="jobLog")
        self.log.setMaximumBlockCount(400)
        self.log.setPlaceholderText("the output of a job started here (or by mmpt.jobs) shows here")
        self.checkpoints = QListWidget(objectName="checkpoints")
        bottom = QTabWidget()
        bottom.addTab(self.log, "Log")
        bottom.addTab(self.checkpoints, "Checkpoints")
        self.runs = RunsPanel()
        self.runs.follow.connect(self.attach)
        self.runs.explore.connect(self.explore_run)
        bottom.addTab(self.runs, "Runs")
        self.bottom = bottom
        monitor = QSplitter(Qt.Orientation.Vertical)
        monitor.addWidget(self.curves)
        monitor.addWidget(bottom)
        monitor.setSizes([380, 260])
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.bar)
        right_layout.addWidget(self.figures)
        right_layout.addWidget(monitor, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([380, 820])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

    # --- actions ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the job described by the form."""
        kind, run, config = self.form.kind.currentText(), self.form.run.text().strip(), self.form.config()
        if not run or not config.get("data"):
            show_error(self, "choose a run folder and a dataset first")
            return
        self.start_button.setEnabled(False)
        self.title.setText(f"starting {kind} in {run}…")
        self.worker = start_worker(start_job, kind, run, config, on_result=self.follow, on_error=self._failed)

    def attach(self, run: str) -> None:
        """Follow the job of an existing run folder (running or ended)."""
        self.worker = start_worker(attach_job, run, on_result=self.follow, on_error=self._failed)

    def stop(self) -> None:
        """Stop the followed job: SIGTERM, it checkpoints, and its process group ends."""
        if self.monitor is None:
            return
        self.stop_button.setEnabled(False)
        self.title.setText(f"stopping {self.monitor.job.kind} in {self.monitor.job.run}…")
        self.monitor.stop()

    def resume(self) -> None:
        """Continue the followed run from its latest checkpoint."""
        if self.monitor is None:
            return
        self.resume_button.setEnabled(False)
        self.worker = start_worker(resume_job, self.monitor.job, on_result=self.follow, on_error=self._failed)

    def _failed(self, reason: str, details: str) -> None:
        self.worker = None
        self.start_button.setEnabled(True)
        self._update_buttons()
        self.title.setText("no job" if self.monitor is None else self.title.text())
        show_error(self, reason, details)

    # --- following -------------------------------------------------------------------------------
    def follow(self, job: Any) -> None:
        """Observe a job (from start, resume or attach)."""
        self.worker = None
        if self.monitor is not None:
            self.monitor.close()
            self.monitor.deleteLater()
        self.curves.clear_curves()
        self.log.clear()
        self.monitor = JobMonitor(job, self)
        self.monitor.events.connect(self.curves.add_events)
        self.monitor.progress.connect(self._progress)
        self.monitor.state.connect(self._state)
        self.monitor.log.connect(self._log)
        self.monitor.ended.connect(lambda _s: self._ended())
        self.monitor.failed.connect(lambda reason, details: show_error(self, reason, details))
        run = str(job.run)
        self.settings.add_recent("runs", run)
        self.runs.set_root(Path(run).parent)
        self.title.setText(f"{job.kind} · {run}")
        self.start_button.setEnabled(True)
        self.monitor.poll()
        self._update_buttons()
        self.run_followed.emit(run)

    def _progress(self, p: dict[str, Any]) -> None:
        step, total = p.get("step"), p.get("total")
        if total:
            self.bar.setRange(0, int(total))
            self.bar.setValue(int(step or 0))
            self.bar.setFormat(f"step {step or 0:,} / {total:,}  (%p%)")
        parts = [f"ETA {format_eta(p.get('eta_s'))}"]
        if p.get("samples_per_s"):
            parts.append(f"{p['samples_per_s']:,.0f} samples/s")
        if p.get("loss") is not None:
            parts.append(f"loss {p['loss']:.4f}")
        if p.get("lr") is not None:
            parts.append(f"lr {p['lr']:.2e}")
        if p.get("mem_gb"):
            parts.append(f"{p['mem_gb']:.2f} GB")
        self.figures.setText(" · ".join(parts))

    def _state(self, status: dict[str, Any]) -> None:
        state = status.get("state", "")
        job = self.monitor.job if self.monitor else None
        text = f"{job.kind} · {job.run} · {state}" if job else state
        if status.get("reason") or status.get("error"):
            text += f" ({status.get('reason') or status.get('error')})"
        self.title.setText(text)
        self._update_buttons()
        self._checkpoints()

    def _log(self, lines: list[str]) -> None:
        text = "\n".join(lines)
        if text != self.log.toPlainText():
            self.log.setPlainText(text)
            self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())

    def _ended(self) -> None:
        self._update_buttons()
        self._checkpoints()
        self.runs.refresh()

    def _checkpoints(self) -> None:
        from mmpt.runs import RunDir

        if self.monitor is None:
            return
        self.checkpoints.clear()
        for ckpt in RunDir(self.monitor.job.run).checkpoint_list():
            self.checkpoints.addItem(ckpt.name)

    def _update_buttons(self) -> None:
        running = self.monitor is not None and self.monitor.last_state.get("state") == "running"
        self.stop_button.setEnabled(running and (self.monitor.stopper is None))
        resumable = (
            self.monitor is not None
            and not running
            and getattr(self.monitor.job, "kind", "") in ("pretrain", "finetune")
        )
        self.resume_button.setEnabled(resumable)

    def running_job(self) -> Any | None:
        """The followed job when it is still running."""
        if self.monitor is not None and self.monitor.running():
            return self.monitor.job
        return None

    def close_monitor(self) -> None:
        """Stop polling (at window close); the job itself keeps running unless stopped."""
        if self.monitor is not None:
            self.monitor.close()
