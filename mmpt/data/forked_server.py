"""The DataLoader workers' forkserver as a fork of the trainer, when that is safe: no second interpreter.

multiprocessing's forkserver starts a fresh interpreter that imports its preload (torch, Lance, open_clip:
3-4 CPU seconds) while the trainer imports the same modules, and the trainer's first batch waits for it
(2-3 s of a short run on 2 cores). Forking the trainer once, before it opens a dataset, gives a server that
already holds those modules; DataLoader workers are then forked from it exactly as from multiprocessing's
own server (same protocol, same `forkserver.main` loop). Used only while the trainer is in a state a fork
copies safely: main thread, no other Python thread, no Lance runtime threads (a dataset opened in this
process), CUDA not initialised, on Linux with a CPython whose forkserver internals are the ones used here
(3.11-3.13). Otherwise the caller falls back to `forkserver.ensure_running()`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import signal
import socket
import sys
import threading
import warnings
from multiprocessing import connection, forkserver, resource_tracker
from pathlib import Path
from typing import Any

SERVER_ONLY = "mmpt.data.forkserver_watch"  # imported by the server itself, never by the trainer
_MAIN_PARAMS = ["listener_fd", "alive_r", "preload", "main_path", "sys_path"]
_SAFE_THREADS = {"python", "jemalloc_bg_thd"}  # the trainer, OpenBLAS's pool, jemalloc's purger


def start_forked_server(preload: list[str]) -> bool:
    """Make multiprocessing's forkserver a fork of this process (importing `preload` here first, except
    SERVER_ONLY, which the server imports); False, doing nothing, when that is not known to be safe."""
    server: Any = forkserver._forkserver  # its private state: typeshed declares none of it
    with server._lock:
        if server._forkserver_pid is not None or not _fork_is_safe():
            return False
        for name in preload:
            if name != SERVER_ONLY:
                importlib.import_module(name)
        if not _fork_is_safe():  # a preloaded module started threads of its own
            return False
        resource_tracker.ensure_running()
        sys.stdout.flush(), sys.stderr.flush()  # or the children would write buffered output again
        with socket.socket(socket.AF_UNIX) as listener:
            address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()  # EOF on alive_r: every client (this process) has gone
            with warnings.catch_warnings():  # Lance warns at every fork; no dataset is open here (checked)
                warnings.filterwarnings("ignore", message="lance is not fork-safe")
                pid = os.fork()
            if pid == 0:  # the server: never returns
                code = 1
                try:
                    os.close(alive_w)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a fresh interpreter's handlers, not
                    signal.signal(signal.SIGINT, signal.default_int_handler)  # the trainer's stop handlers
                    forkserver.main(
                        listener.fileno(), alive_r, [SERVER_ONLY] if SERVER_ONLY in preload else []
                    )
                except SystemExit:  # forkserver.main ends this way when the trainer has gone
                    code = 0
                finally:
                    os._exit(code)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
        return True


def _fork_is_safe() -> bool:
    if not sys.platform.startswith("linux") or not (3, 11) <= sys.version_info[:2] < (3, 14):
        return False
    if threading.current_thread() is not threading.main_thread() or threading.active_count() != 1:
        return False
    if list(inspect.signature(forkserver.main).parameters) != _MAIN_PARAMS:
        return False
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return False
    try:
        names = {Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")}
    except OSError:
        return False
    return names <= _SAFE_THREADS
