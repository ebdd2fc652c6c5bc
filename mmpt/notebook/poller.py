"""A bounded-rate background updater: the one way panels touch widgets from outside the kernel's main thread.

ipykernel >= 7.1 lets a thread set widget traits; printing into an Output widget from a thread is not safe, so
ticks only assign trait values. The poller measures its own CPU time, so a test can check a panel's overhead.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

MAX_HZ = 10.0


class Poller:
    """Calls `tick()` from one daemon thread at most `hz` times a second until `stop()` or `tick()` returns False."""

    def __init__(self, tick: Callable[[], bool | None], hz: float = 4.0, name: str = "mmpt-poller") -> None:
        if not 0 < hz <= MAX_HZ:
            raise ValueError(f"hz must be in (0, {MAX_HZ:g}], got {hz}")
        self.tick = tick
        self.interval = 1.0 / hz
        self.name = name
        self.ticks = 0
        self.error: str | None = None  # the last exception a tick raised, as text (shown by the panel)
        self.cpu_seconds = 0.0
        self.wall_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def cpu_fraction(self) -> float:
        """CPU seconds the ticks used per wall-clock second since start (0.05 = 5% of one core)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def start(self) -> Poller:
        """Start the thread (no-op when it already runs)."""
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end and wait for it (never from inside a tick)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            cpu0 = time.thread_time()
            try:
                more = self.tick()
            except Exception:  # a failing view must not kill the thread silently; the panel shows it
                self.error = traceback.format_exc(limit=3)
                more = True
            self.ticks += 1
            self.cpu_seconds += time.thread_time() - cpu0
            self.wall_seconds = time.perf_counter() - started
            if more is False:
                break
            self._stop.wait(self.interval)
        self.wall_seconds = time.perf_counter() - started
