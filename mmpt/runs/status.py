"""What state a run is really in: status.json and job.json checked against the processes that wrote them.

"running" needs a live process that is provably the job (same host, same pid, same start time); a job whose
process is gone while its files still say running is "crashed", reported with the last lines of its log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmpt.runs.proc import hostname, pid_alive
from mmpt.runs.rundir import RunDir
from mmpt.runs.tail import tail_lines

TRAINING_KINDS = ("pretrain", "finetune")  # the kinds whose process writes status.json
ENDED = ("stopped", "finished", "failed")
LOG_LINES = 20


def run_status(run: str | Path | RunDir) -> dict[str, Any]:
    """{"state": running|stopped|finished|failed|crashed, "step", "total_steps", "kind", "pid", ...} of a run.

    The state of its live job if any, else of its training: an eval, embed or project job that ran on the
    run after training is reported under "last_job" and does not change the run's state.
    """
    rd = run if isinstance(run, RunDir) else RunDir(run)
    out = job_status(rd)
    if out["state"] == "running" or out["kind"] in (None, *TRAINING_KINDS):
        return out
    last_job = {
        k: out.pop(k)
        for k in ("kind", "state", "error", "reason", "returncode", "log_tail", "started")
        if k in out
    }
    status = rd.status()
    out.update(
        kind=None, pid=status.get("pid"), host=status.get("host"), last_job=last_job, **_status_state(status)
    )
    if out["state"] == "failed" and status.get("error"):
        out["error"] = status["error"]
    return {"state": out.pop("state"), **out}


def job_status(run: str | Path | RunDir, *, returncode: int | None = None) -> dict[str, Any]:
    """Like run_status, but the state of the run's latest job whatever its kind (what Job.status() returns).

    `returncode` is the job's exit status when the caller reaped it (mmpt.jobs does); otherwise job.json's.
    A crashed or failed job adds "reason" or "error" and "log_tail" (its last log lines).
    """
    rd = run if isinstance(run, RunDir) else RunDir(run)
    status, job = rd.status(), rd.job()
    out: dict[str, Any] = {
        "state": "",
        "step": status.get("step"),
        "total_steps": status.get("total_steps"),
        "kind": job.get("kind"),
        "pid": job.get("pid", status.get("pid")),
        "host": job.get("host", status.get("host")),
        "time": status.get("time"),
        "started": job.get("started"),
    }
    if job:
        returncode = job.get("returncode") if returncode is None else returncode
        out["returncode"] = returncode
        out.update(_job_state(rd, status, job, returncode))
    else:
        out.update(_status_state(status))
    if out["state"] == "failed" and "error" not in out and status.get("error"):
        out["error"] = status["error"]
    if out["state"] in ("crashed", "failed") and "log_tail" not in out:
        out["log_tail"] = tail_lines(rd.path / job["log"], LOG_LINES) if job.get("log") else []
    return out


def _job_state(rd: RunDir, status: dict, job: dict, returncode: int | None) -> dict[str, Any]:
    """State of a run with a job.json: the job's process decides while it lives, its traces once it ended."""
    here = job.get("host") == hostname()
    fresh = bool(status) and status.get("time", 0) >= job.get("started", 0)  # written by this job
    if here and pid_alive(job.get("pid"), job.get("pid_start")):
        if job.get("thread") and fresh and status.get("state") in ENDED:
            return {"state": status["state"]}  # a thread job in a live session: its run is over
        return {"state": "running"}
    if not here and returncode is None:
        return {
            "state": "crashed",
            "reason": f"the job runs on host {job.get('host')}; its process cannot be checked from here",
        }
    stop_requested = bool(job.get("stop_requested"))
    state = status.get("state") if fresh else None
    if state in ENDED and not (state == "finished" and returncode and returncode > 0):
        return {"state": state}
    if stop_requested:
        return {"state": "stopped"}
    if returncode == 0:
        return {"state": "finished"}
    if returncode is not None and returncode < 0:
        return {"state": "crashed", "reason": f"killed by signal {-returncode}", "returncode": returncode}
    lines = tail_lines(rd.path / job["log"], LOG_LINES) if job.get("log") else []
    error = error_line(lines)
    if returncode or error:
        return {
            "state": "failed",
            "error": error or f"exited with status {returncode}",
            "returncode": returncode,
        }
    if state is None and job.get("kind") not in TRAINING_KINDS:
        return {"state": "finished"}  # exit status unknown (its parent is gone) and its log shows no error
    return {"state": "crashed", "reason": f"process {job.get('pid')} ended without recording an end state"}


def _status_state(status: dict) -> dict[str, Any]:
    """State of a run started without mmpt.jobs (e.g. from a terminal): status.json and its pid."""
    state = status.get("state")
    if not state:
        return {"state": "crashed", "reason": "no status.json: the run never reached its training loop"}
    if state != "running":
        return {"state": state}
    if status.get("host") != hostname():
        return {
            "state": "crashed",
            "reason": f"the run was started on host {status.get('host')}; its process "
            "cannot be checked from here",
        }
    if pid_alive(status.get("pid"), status.get("pid_start")):
        return {"state": "running"}
    ago = time.time() - status.get("time", time.time())
    return {
        "state": "crashed",
        "reason": f"process {status.get('pid')} is gone (or now another program's); "
        f"status last written {ago:.0f} s ago",
    }


def error_line(lines: list[str]) -> str | None:
    """The error a job's log ends with: the CLI's one-line `error: ...`, or a traceback's last line."""
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: ") :]
    if any(line.startswith("Traceback ") for line in lines):
        return next((line for line in reversed(lines) if line.strip()), None)
    return None
