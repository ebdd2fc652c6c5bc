"""mmpt.runs: run history, the incremental metrics tail and process-checked run status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmpt.errors import ConfigError
from mmpt.runs import MetricsTail, RunDir, job_status, list_runs, run_status, tail_lines
from mmpt.runs.proc import hostname, pid_alive, process_start


def make_run(
    path: Path,
    *,
    started: float,
    state: str | None,
    finetune: bool = False,
    best: float | None = None,
    pid: int | None = None,
    step: int = 5,
) -> RunDir:
    """A run folder as the training loop leaves it (config, events, a checkpoint, status)."""
    config = {
        "data": {"dataset": "demo.lance"},
        "model": {"name": "tiny"},
        "train": {"early_stop_metric": "val_loss" if best is not None else ""},
    }
    if finetune:
        config["finetune"] = {"source": "runs/a", "task": "contrastive"}
    run = RunDir.create(path, config)
    run.log({"kind": "start", "step": 0, "total_steps": 10, "time": started})
    run.log({"kind": "train", "step": step, "loss": 1.0, "time": started + 30})
    state_json = {"epoch": 0, "batch": step, "samples": 8 * step, "best_metric": best, "best_step": step}
    run.save_checkpoint(step, lambda folder: (folder / "model.safetensors").write_bytes(b""), {}, state_json)
    if state is not None:
        run.write_status(state, step=step, total_steps=10)
    if pid is not None:
        run.write_status("running", step=step, total_steps=10)
        status = run.status()
        (run.status_path).write_text(json.dumps({**status, "pid": pid, "pid_start": process_start(pid)}))
    return run


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_list_runs_one_row_per_run_newest_first(tmp_path):
    now = time.time()
    make_run(tmp_path / "old", started=now - 3600, state="finished")
    make_run(tmp_path / "ft", started=now - 60, state="stopped", finetune=True, best=0.25)
    make_run(tmp_path / "gone", started=now - 600, state=None, pid=dead_pid())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a run")
    (tmp_path / "file.txt").write_text("neither")

    runs = list_runs(tmp_path)
    assert list(runs["name"]) == ["ft", "gone", "old"]
    assert list(runs["status"]) == ["stopped", "crashed", "finished"]
    assert list(runs["kind"]) == ["finetune", "pretrain", "pretrain"]
    ft = runs.iloc[0]
    assert ft["model"] == "tiny" and ft["dataset"] == "demo.lance"
    assert ft["step"] == 5 and ft["total_steps"] == 10
    assert ft["metric"] == "val_loss" and ft["best_metric"] == pytest.approx(0.25)
    assert runs["best_metric"].isna().iloc[2]  # no early stopping, no final report
    assert runs.iloc[2]["duration_s"] == pytest.approx(time.time() - (now - 3600), abs=30)
    assert list(runs.columns)[:4] == ["name", "path", "kind", "status"]
    assert list_runs(tmp_path / "notes").empty
    with pytest.raises(ConfigError, match="no such folder"):
        list_runs(tmp_path / "missing")


def test_tail_reads_only_whole_new_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == []  # no file yet
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert [e["step"] for e in tail.read()] == [1, 2]
    assert tail.read() == []  # the half line waits
    with path.open("a") as f:
        f.write('ss": 0.5}\nnot json\n{"step": 4}\n')
    assert tail.read() == [{"step": 3, "loss": 0.5}, {"step": 4}]
    assert not tail.restarted


def test_tail_starts_again_when_the_file_is_rewritten(tmp_path):
    run = RunDir.create(tmp_path / "run", {"train": {}})
    for step in range(1, 6):
        run.log({"kind": "train", "step": step})
    tail = MetricsTail(run.metrics_path)
    assert len(tail.read()) == 5
    run.truncate_metrics(after_step=2)  # what a resume does: the file is replaced, shorter
    run.log({"kind": "train", "step": 3})
    assert [e["step"] for e in tail.read()] == [1, 2, 3] and tail.restarted
    assert tail.read() == [] and not tail.restarted
    run.metrics_path.write_text('{"step": 9}\n')  # truncated in place (same inode, smaller)
    assert tail.read() == [{"step": 9}] and tail.restarted


def test_tail_poll_cost_does_not_grow_with_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    line = '{"kind": "train", "step": 1, "loss": 1.0}\n'
    path.write_text(line * 1_000_000)
    tail = MetricsTail(path)
    assert len(tail.read()) == 1_000_000
    polls = []
    with path.open("a") as f:
        for _ in range(20):
            f.write(line * 10)
            f.flush()
            t = time.perf_counter()
            assert len(tail.read()) == 10
            polls.append(time.perf_counter() - t)
    assert sorted(polls)[len(polls) // 2] < 0.005  # median poll under 5 ms on a 40 MB file


def test_log_tail_reads_from_the_end(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)) + "bar 10%\rbar 50%\rbar 100%\n\n")
    assert tail_lines(log, 3) == ["line 99998", "line 99999", "bar 100%"]
    assert tail_lines(tmp_path / "missing.log") == []


def test_status_is_checked_against_the_process(tmp_path):
    run = RunDir.create(tmp_path / "run", {"train": {}})
    run.write_status("running", step=3)
    assert run.status()["pid_start"] == process_start(os.getpid())
    assert run_status(run)["state"] == "running"  # this very process wrote it and still runs

    status = run.status()
    run.status_path.write_text(json.dumps({**status, "pid": dead_pid()}))
    stale = run_status(run)
    assert stale["state"] == "crashed" and "gone" in stale["reason"]

    run.status_path.write_text(json.dumps({**status, "pid_start": status["pid_start"] - 1}))  # a reused pid
    assert pid_alive(os.getpid()) and not pid_alive(os.getpid(), status["pid_start"] - 1)
    assert run_status(run)["state"] == "crashed"

    run.status_path.write_text(json.dumps({**status, "host": hostname() + "-elsewhere"}))
    assert run_status(run)["state"] == "crashed"

    for state in ("finished", "stopped", "failed"):
        run.write_status(state, step=3)
        assert run_status(run)["state"] == state


def test_a_dead_job_is_crashed_with_its_last_log_lines(tmp_path):
    run = RunDir.create(tmp_path / "run", {"train": {}})
    run.logs.mkdir()
    (run.logs / "pretrain.log").write_text("--- started\nstep 1\nstep 2\n")
    pid = dead_pid()
    run.write_job(
        {
            "kind": "pretrain",
            "pid": pid,
            "pgid": pid,
            "pid_start": 1.0,
            "host": hostname(),
            "started": time.time() - 10,
            "log": "logs/pretrain.log",
        }
    )
    run.write_status("running", step=2)
    status = run_status(run)
    assert status["state"] == "crashed" and status["log_tail"][-1] == "step 2"

    run.write_job({**run.job(), "stop_requested": time.time()})  # a stop that killed it before its handler
    assert run_status(run)["state"] == "stopped"
    run.write_job({**run.job(), "stop_requested": None, "returncode": 1})
    (run.logs / "pretrain.log").write_text("--- started\nerror: dataset not found: x.lance\n")
    run.status_path.unlink()
    failed = run_status(run)
    assert failed["state"] == "failed" and failed["error"] == "dataset not found: x.lance"


def test_an_eval_job_after_training_leaves_the_run_state_alone(tmp_path):
    run = RunDir.create(tmp_path / "run", {"train": {}})
    run.write_status("stopped", step=4)
    run.write_job(
        {
            "kind": "eval",
            "pid": dead_pid(),
            "host": hostname(),
            "started": time.time() + 1,
            "returncode": 1,
            "log": "logs/eval.log",
        }
    )
    assert job_status(run)["state"] == "failed"
    status = run_status(run)
    assert status["state"] == "stopped" and status["step"] == 4
    assert status["last_job"]["kind"] == "eval" and status["last_job"]["state"] == "failed"
