"""Follow an mmpt job from the GUI thread: a timer polls its events, progress, status and log, and re-emits them.

The job itself is `mmpt.jobs.Job` (a child process owning a run directory); this is only the observer that a
view connects to. Polling reads what was appended to metrics.jsonl since the last poll, so it stays cheap.
Stopping blocks until the process group is gone, so it runs in a worker thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from gui.workers import Worker, start_worker

POLL_MS = 500


class JobMonitor(QObject):
    """Polls one job; emits `events`, `progress`, `state` (on change), `log` and `ended`."""

    events = Signal(list)
    progress = Signal(dict)
    state = Signal(dict)
    log = Signal(list)
    ended = Signal(dict)
    failed = Signal(str, str)

    def __init__(self, job: Any, parent: QObject | None = None, interval_ms: int = POLL_MS) -> None:
        super().__init__(parent)
        self.job = job
        self.last_state: dict[str, Any] = {}
        self.stopper: Worker | None = None
        self.timer = QTimer(self, interval=interval_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def poll(self) -> None:
        """Read what changed since the last poll and emit it."""
        try:
            new = self.job.events()
            if new:
                self.events.emit(new)
            self.progress.emit(self.job.progress())
            status = self.job.status()
            self.log.emit(self.job.log_tail(40))
        except Exception as exc:  # a run folder deleted under us: say so once and stop polling
            import traceback

            self.timer.stop()
            self.failed.emit(str(exc) or type(exc).__name__, traceback.format_exc())
            return
        if status.get("state") != self.last_state.get("state"):
            self.last_state = status
            self.state.emit(status)
            if status.get("state") != "running":
                self.timer.stop()
                self.ended.emit(status)

    def running(self) -> bool:
        """Whether the job's process is alive."""
        return bool(self.job.is_alive())

    def stop(self, timeout: float = 30.0) -> Worker:
        """Stop the job in a worker thread (SIGTERM, checkpoint, SIGKILL after `timeout`); polls once it is done."""
        self.stopper = start_worker(
            self.job.stop, timeout, on_result=lambda _s: self._after_stop(), on_error=self._stop_failed
        )
        return self.stopper

    def _after_stop(self) -> None:
        self.stopper = None
        self.poll()
        if not self.timer.isActive():
            return
        self.timer.stop()
        self.ended.emit(self.job.status())

    def _stop_failed(self, reason: str, details: str) -> None:
        self.stopper = None
        self.failed.emit(reason, details)

    def close(self) -> None:
        """Stop polling (the job keeps running)."""
        self.timer.stop()
