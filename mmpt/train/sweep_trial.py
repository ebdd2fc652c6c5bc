"""One trial of `mmpt sweep`: a real fine-tune run in the sweep's process or as its own `python -m mmpt finetune`
process, its validation metric followed from RUN/metrics.jsonl and reported to its Optuna trial, and stopped
(SIGTERM: it checkpoints and exits) once the pruner says so. mmpt.train.sweep_study drives the trials.
A trial process runs in its own session (a stop signals its whole group) and ends with the driver, even one
killed with SIGKILL (MMPT_SWEEP_DRIVER, mmpt.store.parent_watch); the driver's rerun resumes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from mmpt.errors import MmptError
from mmpt.runs import MetricsTail, RunDir
from mmpt.runs.proc import pid_alive, process_group, process_start
from mmpt.store.parent_watch import SWEEP_DRIVER, owner_env
from mmpt.train.config import RunConfig

STOP_GRACE_S = 60.0  # a stopped trial checkpoints and exits; after this long its process group is killed


class Follower:
    """Reports a trial's validation metric from its metrics.jsonl to Optuna (the n-th validation is step n)
    and records when the pruner says stop."""

    def __init__(self, trial: Any, run: Path, metric: str, flip: bool) -> None:
        self.trial, self.metric, self.flip = trial, metric, flip
        self.tail = MetricsTail(run / "metrics.jsonl")
        self.validations = 0  # validation events seen
        self.reported = 0  # ... that held the metric
        self.pruned_step: int | None = None

    def poll(self) -> bool:
        """Read what was appended; True once the trial should stop."""
        if self.pruned_step is not None:
            return True
        for event in self.tail.read():
            if event.get("kind") != "val":
                continue
            self.validations += 1
            value = event.get(self.metric)
            if not isinstance(value, int | float):
                continue
            self.reported += 1
            self.trial.report(-float(value) if self.flip else float(value), self.reported)
            if self.trial.should_prune():
                self.pruned_step = int(event.get("step", 0))
                return True
        return False


@dataclass
class Outcome:
    """How a trial ended: finished, pruned, failed (with the error line) or interrupted (to be run again)."""

    state: str
    error: str = ""


class Active:
    """A trial being run: in this process (run to its end on start) or as a child process polled until done."""

    def __init__(self, trial: Any, name: str, params: dict[str, Any], run: Path, follower: Follower) -> None:
        self.trial, self.name, self.params, self.run, self.follower = trial, name, params, run, follower
        self.popen: subprocess.Popen[bytes] | None = None
        self.outcome: Outcome | None = None
        self.stop_deadline: float | None = None
        self.log = run.parent / f"{run.name}.log"

    # -- in this process
    def run_here(self, cfg: RunConfig, pairs_given: bool, progress: bool) -> None:
        from mmpt.train.finetune import finetune

        stop = threading.Event()

        def on_event(event: dict[str, Any]) -> None:
            if self.follower.poll():
                stop.set()

        try:
            result = finetune(
                cfg, self.run, pairs_given=pairs_given, progress=progress, on_event=on_event, stop=stop
            )
        except MmptError as exc:
            self.outcome = Outcome("failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        stopped = result.train is not None and result.train.stopped
        self.outcome = Outcome(self._ended(stopped))

    def _ended(self, stopped: bool) -> str:
        if self.follower.pruned_step is not None:
            return "pruned"
        return "interrupted" if stopped else "finished"

    # -- as a child process
    def start_process(self, cfg: RunConfig, pairs_given: bool) -> None:
        config = self.run.parent / f"{self.run.name}.toml"
        config.write_text(tomli_w.dumps(cfg.to_dict()))
        argv = [sys.executable, "-m", "mmpt", "finetune", "--config", str(config), "--run", str(self.run)]
        argv += ["--quiet"] + (["--pairs", ",".join(cfg.train.pairs)] if pairs_given else [])
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping it also ends its DataLoader workers
                # ends with this driver: `mmpt finetune` watches the process SWEEP_DRIVER names
                env={**os.environ, "PYTHONUNBUFFERED": "1", SWEEP_DRIVER: owner_env()},
            )
        self.trial.set_user_attr("pid", self.popen.pid)
        self.trial.set_user_attr("pid_start", process_start(self.popen.pid))

    def poll(self) -> bool:
        """Follow the metrics, stop the process once pruned; True when the trial has ended."""
        if self.outcome is not None:
            return True
        assert self.popen is not None
        if self.follower.poll() and self.stop_deadline is None:
            self.terminate()
        if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
            _kill_group(self.popen.pid, signal.SIGKILL)
        code = self.popen.poll()
        if code is None:
            return False
        self.follower.poll()
        _end_group(self.popen.pid)
        if code == 0 or self.follower.pruned_step is not None:
            self.outcome = Outcome(self._ended(RunDir(self.run).status().get("state") == "stopped"))
        elif self.stop_deadline is not None:
            self.outcome = Outcome("interrupted")
        else:
            self.outcome = Outcome("failed", _last_error(self.log) or f"exit status {code}")
        return True

    def terminate(self) -> None:
        """SIGTERM: the trainer checkpoints after its current step and exits (killed after STOP_GRACE_S)."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            self.stop_deadline = time.monotonic() + STOP_GRACE_S


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _end_group(pgid: int) -> None:
    """What is left of an ended trial's process group (a forkserver, workers): TERM, then KILL."""
    if not process_group(pgid):
        return
    _kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while process_group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _kill_group(pgid, signal.SIGKILL)


def stop_orphan(pid: int, start: float | None) -> None:
    """A trial process left running by a driver that was killed: stop it like a pruned one, then its group."""
    if not pid_alive(pid, start):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while pid_alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid, start):
        _kill_group(pid, signal.SIGKILL)
    _end_group(pid)


def _last_error(log: Path) -> str:
    from mmpt.runs import tail_lines

    lines = [line for line in tail_lines(log, 20) if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    line = errors[-1] if errors else (lines[-1] if lines else "")
    return line.removeprefix("error: ").strip()
