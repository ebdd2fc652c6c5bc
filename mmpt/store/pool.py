"""An ordered, bounded process-pool map: results come back in submission order with few tasks in flight,
so memory stays flat for any input size and Ctrl-C reaches only the parent; workers never outlive it
(mmpt.store.parent_watch), even when it is killed with SIGKILL.

Workers are spawned (fork is unsafe next to Lance's threads) without re-running the caller's `__main__`:
the tasks only need mmpt modules, and re-importing a script that lacks an `if __name__ == "__main__"`
guard (or a script read from stdin) would break or repeat the caller's work.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from mmpt.store.parent_watch import die_with, owner

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes to use by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker(owner_pid: int, owner_start: float | None) -> None:
    """Ctrl-C reaches only the parent; the worker ends with its parent, even one killed with SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with(owner_pid, owner_start)


@contextmanager
def _main_hidden() -> Iterator[None]:
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
    try:
        if main is not None:
            main.__spec__ = None
            if hasattr(main, "__file__"):
                del main.__file__
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def ordered_map(
    fn: Callable[[T], R], tasks: Iterable[T], workers: int, in_flight: int | None = None
) -> Iterator[R]:
    """fn over tasks in `workers` spawned processes (in-process when workers <= 1), yielded in task order."""
    if workers <= 1:
        for task in tasks:
            yield fn(task)
        return
    limit = in_flight or 2 * workers
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=owner(),
    )
    pending: deque[Future[Any]] = deque()
    try:
        with _main_hidden():
            # Start every worker now, while __main__ is hidden from the spawn preparation.
            for warm in [pool.submit(os.getpid) for _ in range(workers)]:
                warm.result()
        for task in tasks:
            pending.append(pool.submit(fn, task))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
