"""Small training runs in a thread of this process, with the same interface as a process Job.

The thread runs the library call (mmpt.train.pretrain / finetune) with a stop event, which the training loop
checks after every step: stop() sets it, the loop checkpoints and returns. A thread cannot be killed, so
stop(timeout) only waits that long; and the job ends with this process (use a process job for long runs).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmpt.errors import ConfigError
from mmpt.jobs.argv import build_argv, cli_args, parse
from mmpt.jobs.base import Followable
from mmpt.jobs.process import check_startable, resume_argv, run_lock
from mmpt.runs import RunDir
from mmpt.runs.proc import hostname, process_start
from mmpt.runs.status import TRAINING_KINDS, job_status

Target = Callable[[threading.Event], Any]
LIVE: dict[Path, ThreadJob] = {}  # this process's thread jobs by run, for attach()


class ThreadJob(Followable):
    """A pretrain or finetune running in a thread of this process; `.result` holds what the call returned."""

    def __init__(self, run: str | Path, kind: str, target: Target) -> None:
        super().__init__(run, kind)
        self.result: Any = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(target,), name=f"mmpt-{kind}", daemon=True)

    def _main(self, target: Target) -> None:
        try:
            self.result = target(self._stop)
        except BaseException as exc:  # reported by status(); a thread has nobody else to raise to
            self.error = exc

    def is_alive(self) -> bool:
        """Whether the training call is still running."""
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        """Like a process job's status; "running" while the thread runs (its evaluation after training too)."""
        status = job_status(self.rundir)
        if self.is_alive():
            status["state"] = "running"
        elif self.error is not None:
            status.update(
                state="failed",
                error=str(self.error).splitlines()[0] if str(self.error) else type(self.error).__name__,
                log_tail=self.log_tail(),
            )
        return status

    def log_tail(self, n: int = 20) -> list[str]:
        """The traceback of a failed call (a thread job has no log file of its own)."""
        if self.error is None:
            return []
        return "".join(traceback.format_exception(self.error)).splitlines()[-n:]

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Ask the loop to checkpoint and return after its current step; wait up to `timeout` s for it."""
        if self.is_alive():
            info = self.rundir.job()
            if info.get("pid") == os.getpid():
                self.rundir.write_job({**info, "stop_requested": time.time()})
            self._stop.set()
            self._thread.join(timeout)
        return self.status()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the call returns (TimeoutError after `timeout` s); returns the status."""
        self._thread.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"{self.kind} job on {self.run} still running after {timeout:g} s")
        return self.status()

    def resume(self) -> ThreadJob:
        """A new thread job continuing this run from its latest checkpoint."""
        if self.is_alive():
            raise ConfigError(f"the {self.kind} job on {self.run} is still running; stop it before resuming")
        return start_thread(self.kind, self.run, resume=True)


def _target(kind: str, run: Path, config: dict[str, Any], resume: bool) -> Target:
    """The library call the CLI verb would make for these settings (configs resolved now, errors raised now)."""
    if kind == "pretrain":
        return _pretrain_target(run, config, resume)
    from mmpt.train import finetune as api
    from mmpt.train.commands import finetune_config_from_flags

    if resume:
        return lambda stop: api.resume_finetune(run, progress=False, stop=stop)
    kw = parse(kind, cli_args(kind, run, config))
    cfg, pairs_given = finetune_config_from_flags(kw)
    restart = kw["restart"]
    return lambda stop: api.finetune(
        cfg, run, pairs_given=pairs_given, restart=restart, progress=False, stop=stop
    )


def _pretrain_target(run: Path, config: dict[str, Any], resume: bool) -> Target:
    from mmpt.train import pretrain as api
    from mmpt.train.commands import apply_data_flags, train_fields

    if resume:
        return lambda stop: api.resume(run, progress=False, stop=stop)
    kw = parse("pretrain", cli_args("pretrain", run, config))
    base = api.saved_config(run, data=kw["data"]) if kw["restart"] and not kw["config_file"] else None
    cfg = api.resolve_config(
        base,
        config_file=kw["config_file"],
        data=kw["data"],
        model=kw["model"],
        overrides=list(kw["overrides"]),
        **train_fields(kw),
    )
    apply_data_flags(cfg, kw)
    return lambda stop: api.pretrain(cfg, run, restart=kw["restart"], progress=False, stop=stop)


def start_thread(
    kind: str, run: str | Path, config: dict[str, Any] | None = None, *, resume: bool = False
) -> ThreadJob:
    """Run a pretrain or finetune (`config`: its CLI flags as keywords) in a thread of this process, or resume
    one; the same checks and the same job.json as a process job."""
    if kind not in TRAINING_KINDS:
        raise ConfigError(
            f"only {' and '.join(TRAINING_KINDS)} run in a thread; start {kind} as a process job"
        )
    run, config = Path(run).absolute(), dict(config or {})
    target = _target(kind, run, config, resume)
    argv = resume_argv(kind, run) if resume else build_argv(kind, run, config)
    rd = RunDir(run)
    with run_lock(rd):
        check_startable(kind, rd, resume, "--restart" in argv)
        job = ThreadJob(run, kind, target)
        pid = os.getpid()
        rd.write_job(
            {
                "kind": kind,
                "pid": pid,
                "pgid": None,
                "pid_start": process_start(pid),
                "host": hostname(),
                "argv": argv,
                "cwd": os.getcwd(),
                "started": time.time(),
                "thread": True,
            }
        )
        LIVE[job.run] = job
        job._thread.start()
    return job
