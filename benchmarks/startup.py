"""Start-up of a short `mmpt pretrain`: where the seconds before the first step go; prints one JSON object.

    python benchmarks/startup.py [--repeats 5] [--steps 3] [--workers 1] [--threads 2] [--open-clip-train]
                                 [--importtime] [--out DIR]

Each repeat runs the `mmpt pretrain` that train_throughput.py times (tiny preset, image-text, batch 64, fp32 on the
CPU, no eval) in a fresh process for a few steps, and splits its wall time into a timeline from the marks
the loop writes into its "start" event (`startup`) and the first "train" event:

    launch -> train_called (interpreter, imports of the CLI and the loop, config, run folder)
           -> dataset_open -> model_built -> loader_built (loaders, optimiser) -> start event
           -> first_batch (DataLoader worker start and the first batch) -> first_step -> exit

Figures are medians over repeats, in seconds from launch, plus the CPU seconds of the whole process tree
(trainer, forkserver, workers) up to the first step and to the exit, which depend much less on other load
than wall time does. `--open-clip-train` adds open_clip_train's seconds to its first logged step on the
same rows and model. `--importtime` adds the slowest top-level imports of the trainer process
(`python -X importtime`, run once without workers so that only the trainer's imports are counted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput as tt  # noqa: E402  (the data preparation and open_clip_train wrapper are shared)

PHASES = ("train_called", "dataset_open", "model_built", "loader_built", "start", "first_batch", "first_step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pairs", default="image-text")
    parser.add_argument("--open-clip-train", action="store_true", help="also time open_clip_train")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports")
    parser.add_argument("--out", type=Path, help="work folder, kept (default: a temporary folder)")
    args = parser.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="mmpt-startup-") as tmp:
            result = run(args, Path(tmp))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        result = run(args, args.out)
    print(json.dumps(result, indent=2))


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n_rows = tt.prepare_data(work, args.steps * args.batch_size, 0)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "PYTHONWARNINGS": "ignore",
    }
    runs, oc_runs = [], []
    for i in range(args.repeats):
        runs.append(time_mmpt(work, args, env, f"startup-{i}"))
        if args.open_clip_train:
            oc_runs.append(time_open_clip_train(work, args, env))
    out: dict[str, Any] = {
        "command": "mmpt pretrain --model tiny --pairs " + args.pairs,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "threads": args.threads,
        "train_rows": n_rows,
        "load_avg_1min": tt._load(),
        "mmpt": _medians(runs),
        "mmpt_runs": runs,
    }
    if oc_runs:
        out["open_clip_train"] = _medians(oc_runs)
        out["open_clip_train_runs"] = oc_runs
    if args.importtime:
        out["slowest_imports_s"] = slowest_imports(work, args, env)
    return out


def mmpt_command(work: Path, args: argparse.Namespace, run: Path, workers: int) -> list[str]:
    """The benchmark's `mmpt pretrain` (train_throughput's settings) for args.steps steps."""
    sets = {
        "train.eval_after": "false",
        "train.log_every": "1",
        "train.precision": "'fp32'",
        "data.image_augment": "true",
        "train.ckpt_every": str(args.steps),
    }
    return [
        *("-m", "mmpt", "pretrain", "--data", str(work / "demo.lance"), "--run", str(run)),
        *("--model", "tiny", "--pairs", args.pairs, "--max-steps", str(args.steps)),
        *("--batch-size", str(args.batch_size), "--device", "cpu", "--num-workers", str(workers), "--quiet"),
        *[x for k, v in sets.items() for x in ("--set", f"{k}={v}")],
    ]


def time_mmpt(work: Path, args: argparse.Namespace, env: dict[str, str], name: str) -> dict[str, float]:
    """One run: seconds from launch to each phase mark, to exit, and CPU seconds of the process tree."""
    run = work / "runs" / name
    tt._clear(run)
    metrics = run / "metrics.jsonl"

    def events() -> list[dict[str, Any]]:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def first_step_seen() -> bool:
        return any(e.get("kind") == "train" for e in events())

    launch = time.time()
    wall, cpu_first, cpu_exit = _run_tree(
        [sys.executable, *mmpt_command(work, args, run, args.workers)],
        env,
        work / f"{name}.log",
        first_step_seen,
    )
    evs = events()
    start = next(e for e in evs if e["kind"] == "start")
    first = next(e for e in evs if e["kind"] == "train")
    marks = {k: v - launch for k, v in start.get("startup", {}).items()}
    marks["start"] = start["time"] - launch
    first_step = first["time"] - launch
    # the first step's window runs from the start event; its data-wait share is the wait for the first batch
    marks["first_batch"] = marks["start"] + first["data_wait_frac"] * (first_step - marks["start"])
    marks["first_step"] = first_step
    out = {k: round(marks[k], 3) for k in PHASES if k in marks}
    out.update(exit=round(wall, 3), cpu_s_to_first_step=cpu_first, cpu_s_total=cpu_exit)
    return out


def time_open_clip_train(work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    """open_clip_train on the same rows and model: seconds from launch to its first logged step and exit."""
    from mmpt.models.config import ModelConfig

    config = work / "open_clip_config" / f"{tt.OPEN_CLIP_MODEL}.json"
    config.parent.mkdir(exist_ok=True)
    config.write_text(json.dumps(ModelConfig().clip, indent=2))
    logs = work / "runs" / "open_clip_train"
    tt._clear(logs)
    out_log = logs / "run" / "out.log"

    def step_lines() -> list[str]:
        text = out_log.read_text() if out_log.exists() else ""
        return [line for line in text.splitlines() if tt.OPEN_CLIP_STEP.search(line)]

    oc_args = [
        *("--train-data", str(work / "train.csv"), "--dataset-type", "csv", "--csv-separator", "\t"),
        *("--csv-img-key", "filepath", "--csv-caption-key", "title", "--model", tt.OPEN_CLIP_MODEL),
        *("--batch-size", str(args.batch_size), "--workers", str(args.workers), "--epochs", "1"),
        *("--precision", "fp32", "--device", "cpu", "--log-every-n-steps", "1", "--logs", str(logs)),
        *("--name", "run", "--save-frequency", "1", "--zeroshot-frequency", "0", "--val-frequency", "0"),
        *("--report-to", "", "--seed", "0"),
    ]
    cmd = [sys.executable, str(Path(tt.__file__).resolve()), tt.WRAPPER_FLAG, str(config), *oc_args]
    launch = time.time()
    seen_at: list[float] = []

    def first_step_seen() -> bool:
        if not seen_at and step_lines():
            seen_at.append(time.time())
        return bool(seen_at)

    wall, cpu_first, cpu_exit = _run_tree(cmd, env, work / "open_clip_train.log", first_step_seen)
    # its log stamps have 1 s resolution: the poll time (every 50 ms) is the finer figure
    return {
        "first_step": round(seen_at[0] - launch, 3) if seen_at else float("nan"),
        "exit": round(wall, 3),
        "cpu_s_to_first_step": cpu_first,
        "cpu_s_total": cpu_exit,
    }


def slowest_imports(
    work: Path, args: argparse.Namespace, env: dict[str, str], top: int = 15
) -> dict[str, float]:
    """Cumulative seconds of the slowest top-level packages the trainer imports (one run, no workers)."""
    run = work / "runs" / "importtime"
    tt._clear(run)
    cmd = [sys.executable, "-X", "importtime", *mmpt_command(work, args, run, 0)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    totals: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package": top level = one space of indent
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].startswith("import time:") or not parts[1].strip().isdigit():
            continue
        name = parts[2][1:]
        if name.startswith(" "):
            continue
        root = name.split(".")[0]
        totals[root] = totals.get(root, 0.0) + int(parts[1]) / 1e6
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return {k: round(v, 3) for k, v in ranked}


def _run_tree(
    cmd: list[str], env: dict[str, str], log: Path, first_step_seen: Any
) -> tuple[float, float | None, float | None]:
    """Run `cmd` (output to `log`); wall seconds, and CPU seconds of its process tree at the first step and
    at the end (psutil; None without it). A process that exits between polls keeps its last reading."""
    try:
        import psutil
    except ImportError:
        psutil = None
    t0 = time.perf_counter()
    seen: dict[int, float] = {}
    cpu_first: float | None = None
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        tree = psutil.Process(proc.pid) if psutil else None
        while proc.poll() is None:
            time.sleep(0.05)
            if tree is not None:
                seen.update(tt._tree_cpu(tree))
            if cpu_first is None and first_step_seen():
                cpu_first = round(sum(seen.values()), 2) if tree is not None else None
        first_step_seen()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:5])} ... failed (exit {proc.returncode}); see {log}")
    return wall, cpu_first, round(sum(seen.values()), 2) if tree is not None else None


def _medians(runs: list[dict[str, float]]) -> dict[str, float | None]:
    keys = [k for k in runs[0] if all(r.get(k) is not None for r in runs)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


if __name__ == "__main__":
    main()
