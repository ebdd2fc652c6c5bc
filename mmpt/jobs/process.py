"""Jobs as child processes: `python -m mmpt <verb> ...` in its own process group, owning a run directory.

Output goes to RUN/logs/<kind>.log (never to a pipe nobody drains); RUN/job.json records pid, pgid, the pid's
start time, argv, kind and start time so that any later Python process can attach, follow and stop the job.
The job keeps running when the process that started it exits: it has its own session, and nothing here
kills it on garbage collection or at exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmpt.errors import ConfigError
from mmpt.jobs.base import Followable
from mmpt.runs import RunDir, run_status
from mmpt.runs.proc import hostname, pid_alive, process_group, process_start
from mmpt.runs.status import TRAINING_KINDS, job_status

POLL_S = 0.05
STRAGGLER_GRACE_S = 2.0  # after the leader exits, how long the rest of its group gets before SIGKILL


class Job(Followable):
    """A job running (or run) as a child process on a run directory; every method may be polled from a UI."""

    def __init__(self, run: str | Path, kind: str, popen: subprocess.Popen | None = None) -> None:
        super().__init__(run, kind)
        self._popen = popen  # set when this process started the job: it then reaps it and knows its exit code
        info = self.rundir.job() or self.rundir.status()  # a run started from a terminal has no job.json
        self.pid: int | None = info.get("pid")
        self.pgid: int | None = info.get("pgid")  # None: not our group to signal, only the process
        self._start: float | None = info.get("pid_start")
        self._host: str = info.get("host", hostname())
        self._thread = bool(info.get("thread"))

    def is_alive(self) -> bool:
        """Whether the job's process still runs (ended but not yet reaped counts as ended)."""
        if self._popen is not None:
            alive = self._popen.poll() is None
            if not alive:
                self._record_exit()
            return alive
        if self._thread:  # a thread of another live process (a kernel): its run says whether it still trains
            return run_status(self.rundir)["state"] == "running"
        return self._host == hostname() and pid_alive(self.pid, self._start)

    def status(self) -> dict[str, Any]:
        """mmpt.runs.job_status: this job's state (running / stopped / finished / failed / crashed) and figures."""
        self.is_alive()
        return job_status(self.rundir, returncode=self._popen.returncode if self._popen is not None else None)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends (TimeoutError after `timeout` s); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(
                    f"{self.kind} job on {self.run} still running after {timeout:g} s"
                ) from None
        while self.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} job on {self.run} still running after {timeout:g} s")
            time.sleep(0.2)
        return self.status()

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM (the trainer checkpoints and exits), SIGKILL to the whole group after `timeout` s.

        Returns once no process of the group is left; stopping a job that already ended does nothing.
        SIGTERM goes to the job's main process only: sent to the group it would also kill DataLoader workers
        under the trainer's feet, which then fails instead of checkpointing.
        """
        if self.pid is None or not self.is_alive():
            return self.status()  # ended already: its group id may belong to someone else by now
        if self._thread:
            raise ConfigError(
                f"the {self.kind} job on {self.run} runs in a thread of process {self.pid} "
                "(a notebook kernel?); stop it from there"
            )
        info = self.rundir.job()
        if info and info.get("pid") == self.pid:
            self.rundir.write_job({**info, "stop_requested": time.time()})
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if self.is_alive():
            self._signal_group(signal.SIGKILL)
            self._wait_gone(deadline=time.monotonic() + 10)
        self._end_stragglers()
        return self.status()

    def resume(self) -> Job:
        """A new job continuing this run from its latest checkpoint (`mmpt <kind> --resume RUN`)."""
        if self.kind not in TRAINING_KINDS:
            raise ConfigError(f"a {self.kind} job cannot be resumed; start it again")
        if self.is_alive():
            raise ConfigError(f"the {self.kind} job on {self.run} is still running; stop it before resuming")
        return launch(self.kind, self.run, resume_argv(self.kind, self.run), resume=True)

    # ---- ending the process group ----------------------------------------------------------------------------
    def _end_stragglers(self) -> None:
        """After the main process ended: TERM, then KILL, what is left of its group (e.g. a forkserver)."""
        if self.pgid is None or not self._group_left():
            return
        self._signal_group(signal.SIGTERM)
        if not self._wait_gone(deadline=time.monotonic() + STRAGGLER_GRACE_S):
            self._signal_group(signal.SIGKILL)
            self._wait_gone(deadline=time.monotonic() + 10)

    def _group_left(self) -> bool:
        """Whether a live process of the group is left (the main one is reaped here when this started it)."""
        if self.is_alive():
            return True
        return self.pgid is not None and bool(process_group(self.pgid))

    def _wait_gone(self, deadline: float) -> bool:
        while self._group_left():
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True

    def _signal_group(self, sig: int) -> None:
        """Signal the job's group; only while it provably is the job's (its main process alive, or its group
        still populated: a group's id cannot be reused while any member lives)."""
        if not self.pgid:
            if self.pid is not None and self.is_alive():
                os.kill(self.pid, sig)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def _record_exit(self) -> None:
        """Write the exit code into job.json (if it is still this job's), for processes attaching later."""
        info = self.rundir.job()
        if self._popen is not None and info.get("pid") == self._popen.pid and "returncode" not in info:
            self.rundir.write_job({**info, "returncode": self._popen.returncode, "ended": time.time()})


@contextlib.contextmanager
def run_lock(rd: RunDir) -> Iterator[None]:
    """Serialise job starts on one run directory (two UIs pressing start at once)."""
    rd.path.mkdir(parents=True, exist_ok=True)
    with (rd.path / ".job.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resume_argv(kind: str, run: str | Path) -> list[str]:
    """`python -m mmpt <kind> --resume RUN --quiet`."""
    return [sys.executable, "-m", "mmpt", kind, "--resume", str(run), "--quiet"]


def check_startable(kind: str, rd: RunDir, resume: bool, restart: bool = False) -> None:
    """Refuse a second live job on a run directory, a new training run over an old one (unless `restart`),
    a missing run. (Whether a checkpoint is intact is checked by the job itself, off the caller's thread.)"""
    if resume and rd.latest_checkpoint(verify=False) is None:
        raise ConfigError(f"{rd.path} has no checkpoint to resume from; start it over with restart=True")
    if kind in TRAINING_KINDS and not resume and not restart and rd.config_path.exists():
        raise ConfigError(
            f"{rd.path} already holds a run; resume it (job.resume() / mmpt {kind} --resume), "
            "start it over (restart=True) or choose a new folder"
        )
    if kind not in TRAINING_KINDS and not rd.path.exists():
        raise ConfigError(f"run not found: {rd.path}")
    if rd.job() or rd.status():
        current = run_status(rd)
        if current["state"] == "running":
            raise ConfigError(
                f"{rd.path} already has a running {current.get('kind') or 'training'} job "
                f"(pid {current.get('pid')}); stop it first, or follow it with mmpt.jobs.attach"
            )


def launch(kind: str, run: str | Path, argv: list[str], *, resume: bool = False) -> Job:
    """Start `argv` in its own session, output to RUN/logs/<kind>.log, and record it in RUN/job.json."""
    rd = RunDir(run)
    restart = "--restart" in argv
    check_startable(kind, rd, resume, restart)
    with run_lock(rd):
        check_startable(kind, rd, resume, restart)
        rd.logs.mkdir(exist_ok=True)
        log = rd.logs / f"{kind}.log"
        started = time.time()
        with log.open("ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        rd.write_job(
            {
                "kind": kind,
                "pid": proc.pid,
                "pgid": proc.pid,
                "pid_start": process_start(proc.pid),
                "host": hostname(),
                "argv": argv,
                "cwd": os.getcwd(),
                "started": started,
                "log": str(log.relative_to(rd.path)),
                "thread": False,
            }
        )
    return Job(rd.path, kind, popen=proc)
