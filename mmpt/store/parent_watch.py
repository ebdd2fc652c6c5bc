"""Child processes that end with the process they work for, even when it is killed with SIGKILL.

A pool or data-loader worker blocked on its task queue never notices its parent dying (it holds both ends of
the queue's pipe itself), and a DataLoader worker's parent is the forkserver, which lives as long as its
children: without this they stay forever. `die_with(pid, start)` runs in the worker: a daemon thread waits on
a pidfd of the watched process (Linux >= 5.3; elsewhere it polls every 0.2 s) and ends the worker with
os._exit the moment that process is gone. Unlike prctl(PR_SET_PDEATHSIG), this follows a *process* (not the
thread that spawned the worker) and works for grandchildren (forkserver workers) too.
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path

FORKSERVER_OWNER = "MMPT_FORKSERVER_OWNER"  # "pid:start" of the process a data-loader forkserver ends with
SWEEP_DRIVER = "MMPT_SWEEP_DRIVER"  # "pid:start" of the `mmpt sweep` driver a trial process ends with
EXIT_CODE = 75  # what a worker exits with when its owner is gone (EX_TEMPFAIL)
POLL_S = 0.2


def owner() -> tuple[int, float | None]:
    """(pid, start time) of this process: what a worker it starts should watch (passed as initargs)."""
    pid = os.getpid()
    return pid, _start_time(pid)


def owner_env() -> str:
    """This process as "pid:start", the form a child reads from an environment variable (die_with_env)."""
    pid, start = owner()
    return f"{pid}:{'' if start is None else repr(start)}"


def die_with_env(var: str) -> bool:
    """End this process with the one environment variable `var` names ("pid:start"), if it is set; True then.

    The variable is removed, so this process's own children watch it (their parent), not its parent.
    """
    pid, _, start = os.environ.pop(var, "").partition(":")
    if not pid.isdigit():
        return False
    die_with(int(pid), float(start) if start else None)
    return True


def die_with(pid: int, start: float | None = None) -> None:
    """End this process as soon as process `pid` (started at `start`, when known) is gone; returns at once.

    If it is already gone (killed while this worker was starting), this process exits now.
    """
    fd = _pidfd(pid)
    if not _same_process(pid, start):  # gone, or the pid already belongs to another program
        if fd is not None:
            os.close(fd)
        os._exit(EXIT_CODE)
    target = _wait_pidfd if fd is not None else _wait_polling
    arg = fd if fd is not None else pid
    threading.Thread(target=target, args=(arg, start), name="mmpt-parent-watch", daemon=True).start()


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except ProcessLookupError:
        os._exit(EXIT_CODE)
    except OSError:  # kernel without pidfd_open, or not permitted: poll instead
        return None


def _wait_pidfd(fd: int, start: float | None) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll():  # readable once the process has exited (a zombie counts)
        pass
    os._exit(EXIT_CODE)


def _wait_polling(pid: int, start: float | None) -> None:
    while _same_process(pid, start):
        time.sleep(POLL_S)
    os._exit(EXIT_CODE)


def _start_time(pid: int) -> float | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), None when unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return float(fields[19]) if fields[0] not in ("Z", "X") else None


def _same_process(pid: int, start: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if Path("/proc").is_dir():
        now = _start_time(pid)
        return now is not None and (start is None or now == start)
    return True
