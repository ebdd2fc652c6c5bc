"""A minimal evented value for headless models: callbacks fire only when the value really changes.

napari's `EventedModel` and psygnal do this for whole models; the explorer needs two events, so a small
callback list is enough and adds no dependency. Callbacks run in the thread that changed the value
(a background projection fires from its worker thread): Qt views forward them through a queued signal,
notebook views may set widget traits directly (ipykernel >= 7.1 allows it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


class Signal:
    """A list of callbacks: `connect` returns a function that disconnects; `blocked()` mutes echoes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []
        self._lock = threading.Lock()
        self._blocked = 0

    def __repr__(self) -> str:
        return f"Signal({self.name!r}, callbacks={len(self._callbacks)})"

    def connect(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call `callback(*args)` on every emit; returns a function that disconnects it again."""
        if not callable(callback):
            raise TypeError(f"{self.name} callback must be callable, got {type(callback).__name__}")
        with self._lock:
            self._callbacks.append(callback)
        return lambda: self.disconnect(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        """Stop calling `callback` (no error if it was not connected)."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        """Within this block `emit` does nothing: a view writing the model mutes its own echo."""
        with self._lock:
            self._blocked += 1
        try:
            yield
        finally:
            with self._lock:
                self._blocked -= 1

    def emit(self, *args: Any) -> None:
        """Call every callback; one that raises is logged and does not stop the others."""
        with self._lock:
            if self._blocked:
                return
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(*args)
            except Exception:  # a broken view must not break the model or the other views
                log.exception("%s callback %r failed", self.name, callback)
