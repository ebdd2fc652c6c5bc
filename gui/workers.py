"""Run slow work off the GUI thread (superqt's thread_worker pattern): generators yield progress, stops land there.

A worker is a QThread running a plain function or generator. Progress values are forwarded to the GUI thread at
most `MAX_RATE` times a second (the last value always arrives), results and errors come back through signals, and
every live worker is asked to stop, quit and waited for when the application quits: a QThread alive at exit aborts
the process.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal

MAX_RATE = 50.0  # progress signals per second, at most
_LIVE: set[Worker] = set()
_HOOKED = False


class StopRequested(Exception):
    """Raised inside a plain-function worker that polls `worker.should_stop()` and wants to end early."""


class Worker(QThread):
    """A function or generator running in its own thread; connect to the signals before `start()`."""

    progressed = Signal(object)  # the latest value a generator yielded (throttled)
    returned = Signal(object)  # the return value
    errored = Signal(str, str)  # one-line reason, full traceback
    stopped = Signal()  # ended early because stop() was called

    def __init__(self, fn: Callable[..., Any], *args: Any, max_rate: float = MAX_RATE, **kwargs: Any) -> None:
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._stop = False
        self.emitted = 0  # progress signals sent (tests check the throttle with it)
        self.finished.connect(self._forget)

    def stop(self) -> None:
        """Ask the worker to end at its next yield (or its next `should_stop()` check)."""
        self._stop = True
        self.requestInterruption()

    def should_stop(self) -> bool:
        """True once stop() was called: long plain functions may poll this."""
        return self._stop

    def run(self) -> None:  # noqa: D102 - runs in the worker thread
        try:
            result = self._fn(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                result = self._drain(result)
        except StopRequested:
            self.stopped.emit()
            return
        except Exception as exc:  # every failure reaches the GUI as a dialog, never a dead thread
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.errored.emit(reason, traceback.format_exc())
            return
        if self._stop:
            self.stopped.emit()
        else:
            self.returned.emit(result)

    def _drain(self, gen: Any) -> Any:
        """Iterate a generator, forwarding its yields throttled; returns its return value."""
        last_emit, pending, has_pending = 0.0, None, False
        try:
            while True:
                if self._stop:
                    gen.close()
                    break
                try:
                    value = next(gen)
                except StopIteration as done:
                    return done.value
                now = time.monotonic()
                if now - last_emit >= self._interval:
                    self._emit(value)
                    last_emit, has_pending = now, False
                else:
                    pending, has_pending = value, True
        finally:
            if has_pending:
                self._emit(pending)
        return None

    def _emit(self, value: Any) -> None:
        self.emitted += 1
        self.progressed.emit(value)

    def _forget(self) -> None:
        _LIVE.discard(self)


def start_worker(
    fn: Callable[..., Any],
    *args: Any,
    on_progress: Callable[[Any], None] | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
    parent: QObject | None = None,
    **kwargs: Any,
) -> Worker:
    """Start `fn(*args, **kwargs)` in a worker thread with its callbacks connected; returns the running worker."""
    worker = Worker(fn, *args, **kwargs)
    for signal, slot in (
        (worker.progressed, on_progress),
        (worker.returned, on_result),
        (worker.errored, on_error),
        (worker.stopped, on_stopped),
    ):
        if slot is not None:
            signal.connect(slot)
    if parent is not None:
        parent.destroyed.connect(worker.stop)
    _LIVE.add(worker)
    _hook_quit()
    worker.start()
    return worker


def live_workers() -> list[Worker]:
    """Workers started and not yet finished."""
    return [w for w in _LIVE if w.isRunning()]


def shutdown_workers(timeout_ms: int = 5000) -> None:
    """Ask every live worker to stop, then wait for each (called on aboutToQuit and by tests' teardown)."""
    workers = list(_LIVE)
    for worker in workers:
        worker.stop()
        worker.quit()
    for worker in workers:
        if not worker.wait(timeout_ms):
            worker.terminate()
            worker.wait(1000)
        _LIVE.discard(worker)


def _hook_quit() -> None:
    """Wait for all workers when the application quits (once per process)."""
    global _HOOKED
    app = QCoreApplication.instance()
    if app is not None and not _HOOKED:
        app.aboutToQuit.connect(shutdown_workers)
        _HOOKED = True
