"""Imported first by the data loaders' forkserver (WORKER_PRELOAD): the forkserver ends with its trainer.

A forkserver otherwise notices its parent's death only after its preload (torch, Lance, open_clip: tens of
seconds on a busy machine) and never while a worker it forked holds the "alive" pipe. `worker_context()` puts
the trainer's (pid, start time) in MMPT_FORKSERVER_OWNER before starting the server; only the server imports
this module (nothing else may import it), and only a direct child of that process starts watching it.
"""

from __future__ import annotations

import os
import warnings

from mmpt.store.parent_watch import FORKSERVER_OWNER, die_with


def watch_owner() -> None:
    """Start watching the process named in MMPT_FORKSERVER_OWNER when it is this process's parent."""
    pid, _, start = os.environ.get(FORKSERVER_OWNER, "").partition(":")
    if pid.isdigit() and int(pid) == os.getppid():
        die_with(int(pid), float(start) if start else None)


# Lance warns at every fork of a process that imported it. The forkserver only imports Lance (its preload) and
# never opens a dataset, so no Lance threads exist when it forks; each worker opens its own dataset after.
warnings.filterwarnings("ignore", message="lance is not fork-safe")
watch_owner()
