"""Following and stopping jobs: metrics tail poll cost on a 1M-line metrics.jsonl, and Job.stop() time. Prints JSON.

    python benchmarks/runs.py                     # 1M lines, 50 polls of 10 new lines; stop a tiny pretrain
    python benchmarks/runs.py --num-workers 1     # stop a job whose DataLoader has a worker process

The tail figure is the time of `MetricsTail.read()` after the initial read, with 10 lines appended before
each poll (what a UI polling a live run sees). The stop figures, on a tiny-preset pretrain of the demo data
stopped after its first logged step (the trainer finishes its step, checkpoints and exits): `stop_s` until
`job.stop()` returns (no live process of the group left), `group_gone_s` until `os.killpg(pgid, 0)` fails
(the trainer's exited helper processes, e.g. a forkserver, are reaped by init, not by us).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

LINE = '{"kind": "train", "step": %d, "epoch": 0, "loss": 1.2345, "loss/image_text": 0.61, "lr": 0.0005}\n'


def tail_figures(folder: Path, lines: int, polls: int, new_per_poll: int) -> dict:
    """Initial read and per-poll cost of MetricsTail on a `lines`-line metrics.jsonl."""
    from mmpt.runs import MetricsTail

    path = folder / "metrics.jsonl"
    with path.open("w") as f:
        for start in range(0, lines, 100_000):
            f.write("".join(LINE % i for i in range(start, min(lines, start + 100_000))))
    tail = MetricsTail(path)
    t = time.perf_counter()
    assert len(tail.read()) == lines
    initial = time.perf_counter() - t
    times = []
    with path.open("a") as f:
        for k in range(polls):
            f.write("".join(LINE % (lines + k * new_per_poll + i) for i in range(new_per_poll)))
            f.flush()
            t = time.perf_counter()
            assert len(tail.read()) == new_per_poll
            times.append(time.perf_counter() - t)
    return {
        "lines": lines,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "initial_read_s": round(initial, 2),
        "poll_ms_median": round(1000 * statistics.median(times), 3),
        "poll_ms_max": round(1000 * max(times), 3),
        "new_lines_per_poll": new_per_poll,
    }


def stop_figures(folder: Path, rows: int, num_workers: int) -> dict:
    """Seconds from Job.stop() until the job's process group is gone, on a running tiny pretrain."""
    import mmpt.jobs
    from mmpt.store.synthetic import make_demo_dataset

    data = make_demo_dataset(folder / "demo.lance", n_rows=rows, seed=0).uri
    job = mmpt.jobs.start(
        "pretrain",
        folder / "run",
        data=str(data),
        model="tiny",
        max_steps=10_000,
        batch_size=16,
        device="cpu",
        num_workers=num_workers,
        overrides={"train.log_every": 1, "train.eval_after": False},
    )
    assert isinstance(job, mmpt.jobs.Job) and job.pgid is not None
    t_start = time.perf_counter()
    while (job.progress()["step"] or 0) < 1:
        if not job.is_alive():
            raise SystemExit(f"the job ended before its first step: {job.log_tail(5)}")
        time.sleep(0.1)
    first_step_s = time.perf_counter() - t_start
    t = time.perf_counter()
    status = job.stop(timeout=30)
    stopped_s = time.perf_counter() - t
    while time.perf_counter() - t < 60:  # exited children of the trainer (e.g. a forkserver) wait for init
        try:
            os.killpg(job.pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    gone_s = time.perf_counter() - t
    ckpt = job.rundir.latest_checkpoint()
    return {
        "stop_s": round(stopped_s, 2),
        "group_gone_s": round(gone_s, 2),
        "state": status["state"],
        "checkpoint": ckpt.name if ckpt else None,
        "start_to_first_step_s": round(first_step_s, 1),
        "num_workers": num_workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--polls", type=int, default=50)
    parser.add_argument("--new-per-poll", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200, help="Demo rows of the stopped job's dataset.")
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = {
            "tail": tail_figures(Path(tmp), args.lines, args.polls, args.new_per_poll),
            "stop": stop_figures(Path(tmp), args.rows, args.num_workers),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_1min": round(os.getloadavg()[0], 2),
            },
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
