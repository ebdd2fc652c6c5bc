"""mmpt.jobs: start, follow, stop and re-attach to jobs that own a run directory, without blocking the caller.

    job = mmpt.jobs.start("pretrain", "runs/a", data="demo.lance", model="tiny", max_steps=200)
    job.progress()        # {"step": 40, "total": 200, "eta_s": 31.5, "samples_per_s": ..., "losses": {...}}
    job.events()          # metrics.jsonl events since the last call
    job.stop()            # SIGTERM: the trainer checkpoints; SIGKILL to the group after the timeout
    job = job.resume()    # python -m mmpt pretrain --resume runs/a
    job = mmpt.jobs.attach("runs/a")   # from another process, e.g. after a kernel restart

A job is `python -m mmpt <kind> ...` in its own process group (it outlives the process that started it);
`in_thread=True` runs a small pretrain/finetune in a thread of this process instead, with the same methods.
UIs poll these methods; nothing here pushes events.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmpt.errors import ConfigError
from mmpt.jobs.argv import KINDS, build_argv
from mmpt.jobs.process import Job, launch, resume_argv
from mmpt.jobs.thread import LIVE, ThreadJob, start_thread
from mmpt.runs import RunDir

__all__ = ["KINDS", "Job", "ThreadJob", "attach", "build_argv", "resume", "start"]


def start(kind: str, run: str | Path, *, in_thread: bool = False, **config: Any) -> Job | ThreadJob:
    """Start a pretrain / finetune / eval / embed / project job on `run`; keywords are the verb's CLI flags
    (`max_steps=20` is `--max-steps 20`). Unknown or invalid ones, a run that already holds a live job, or a
    new training run over an existing one: a one-line ConfigError, before anything starts."""
    if in_thread:
        return start_thread(kind, run, config)
    run = Path(run).absolute()
    config.setdefault("quiet", True)  # no progress bar redrawn into the log: progress() reads metrics.jsonl
    return launch(kind, run, build_argv(kind, run, config))


def resume(run: str | Path, *, in_thread: bool = False) -> Job | ThreadJob:
    """Continue a stopped, killed or crashed pretrain / finetune run from its latest checkpoint, as a new job."""
    rd = RunDir.open(Path(run).absolute())
    kind = "finetune" if "finetune" in rd.config_dict() else "pretrain"
    if in_thread:
        return start_thread(kind, rd.path, resume=True)
    return launch(kind, rd.path, resume_argv(kind, rd.path), resume=True)


def attach(run: str | Path) -> Job | ThreadJob:
    """The job of a run directory, from any process (running or ended: its status says which, crashed included)."""
    rd = RunDir(Path(run).absolute())
    info = rd.job()
    if info.get("thread") and info.get("pid") == os.getpid() and rd.path in LIVE:
        return LIVE[rd.path]
    if info:
        return Job(rd.path, info["kind"])
    if not rd.status():
        raise ConfigError(f"{run}: no job has run here (neither job.json nor status.json)")
    return Job(rd.path, "finetune" if "finetune" in rd.config_dict() else "pretrain")
