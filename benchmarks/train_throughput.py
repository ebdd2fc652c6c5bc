"""Training throughput: mmpt's loop against open_clip's own trainer on the same data; prints one JSON object.

    python benchmarks/train_throughput.py [--steps 50] [--warmup 10] [--batch-size 64] [--workers 1]
                                          [--threads 2] [--repeats 3] [--out DIR]

What it measures: steady-state training samples/s of

* mmpt in image-text mode (`mmpt pretrain --pairs image-text`, the tiny preset),
* open_clip's own trainer (`open_clip_train.main` with its CSV loader) on the very same open_clip model
  config (mmpt's tiny preset's `clip` dict, registered with `open_clip.add_model_config`),
* mmpt tri-modal (image-text, audio-text and image-audio pairs: image, text and audio towers), alongside.

How: the demo rows (mmpt.store.synthetic) that fall in the train split and have an image, a caption and
audio are written once, as a Lance dataset for mmpt and as PNG files plus a tab-separated CSV of
`filepath` and `title` for open_clip_train: both read the same images and captions. Each trainer runs in a
fresh subprocess with the same environment (OMP_NUM_THREADS = --threads), batch size and number of
DataLoader workers, in fp32 on the CPU, with AdamW at the same hyper-parameters, gradient clipping at 1,
no evaluation, no wandb or tensorboard. The split holds exactly warmup + steps batches, so each trainer
runs one epoch of that many steps. Both log every step (mmpt: RUN/metrics.jsonl, open_clip_train: the
"Batch (t)" of its out.log), and a run's figure is batch size x steps / wall time of the steps
warmup+1 .. warmup+steps, data wait included; the first --warmup steps (worker start-up, allocator
warm-up) do not count. Both use open_clip's train-time image transform (RandomResizedCrop, scale 0.9-1,
then normalisation): mmpt with data.image_augment=true, so every image costs the same in both loaders.

The machine may be shared: rounds alternate the trainers so that a change in other load hits them alike,
the headline figures are medians over rounds (the ratio is the median of the per-round ratios), and each
run also reports the CPU time its process tree (trainer and DataLoader workers) spent per sample over
the measured steps, which depends much less on other load than wall time does.

A third figure isolates the training step from data loading and start-up: in this one process, the same
fixed batch (random pixels and tokens) goes through open_clip_train's step (open_clip.create_model on the
same config, ClipLoss, AdamW with its parameter groups, clipping, logit-scale clamp) and mmpt's step
(build_model, ContrastiveLoss, build_optimizer, clipping, clamp), in alternating blocks of steps; the
figure is the median ms per step of each (`step_ms`), which is what the two trainers' compute costs.

The whole command counts too: `whole_command_samples_per_s` is every step's samples over the process's
wall time (start-up, steps, mmpt's final checkpoint, exit), `whole_command_ratio` the median per-round
ratio of mmpt's to open_clip_train's, and each mmpt run's `startup_s` its timeline from launch to the
first step (the loop's start-up marks; benchmarks/startup.py breaks it down further).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OPEN_CLIP_MODEL = "mmpt-tiny-bench"
WRAPPER_FLAG = "_open_clip_train"  # argv[1] that makes this file run open_clip_train (see the bottom)
# Optimiser and schedule shared by both trainers (mmpt's TrainConfig defaults).
LR, WD, BETAS, EPS, LR_WARMUP, GRAD_CLIP = 5e-4, 0.1, (0.9, 0.98), 1e-6, 50, 1.0
TRIMODAL = "image-text,audio-text,image-audio"
# One open_clip_train log line per step: "Train Epoch: 0 [ 640/3840 (17%)] Data (t): 0.012 Batch (t): 0.345, ..."
OPEN_CLIP_STEP = re.compile(r"Train Epoch: \d+ \[\s*(\d+)/\d+ .*?Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps measured per run")
    parser.add_argument("--warmup", type=int, default=10, help="steps run first and not measured")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (both trainers)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads (both)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds of open_clip_train, mmpt, mmpt tri-modal"
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=0,
        help="demo rows to draw train rows from (default: just enough for warmup + steps batches)",
    )
    parser.add_argument("--out", type=Path, help="work folder, kept (default: a temporary folder)")
    parser.add_argument("--no-trimodal", action="store_true", help="skip the tri-modal mmpt runs")
    parser.add_argument(
        "--step-blocks", type=int, default=8, help="alternating blocks of 10 steps, in-process"
    )
    args = parser.parse_args()

    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="mmpt-train-bench-") as tmp:
            result = run_benchmark(args, Path(tmp))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        result = run_benchmark(args, args.out)
    print(json.dumps(result, indent=2))


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    total = args.warmup + args.steps
    n_train = prepare_data(work, total * args.batch_size, args.rows)
    if n_train < total * args.batch_size:
        sys.exit(f"only {n_train} usable train rows, {total * args.batch_size} needed: raise --rows")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "PYTHONWARNINGS": "ignore",
    }

    rounds: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        entry: dict[str, Any] = {"load_avg_1min_before": _load()}
        entry["open_clip_train"] = run_open_clip_train(work, args, env)
        entry["mmpt_image_text"] = run_mmpt(work, args, env, "image-text", "mmpt-image-text")
        if not args.no_trimodal:
            entry["mmpt_trimodal"] = run_mmpt(work, args, env, TRIMODAL, "mmpt-trimodal")
        entry["ratio"] = round(
            entry["mmpt_image_text"]["samples_per_s"] / entry["open_clip_train"]["samples_per_s"], 3
        )
        entry["whole_command_ratio"] = round(
            entry["mmpt_image_text"]["whole_command_samples_per_s"]
            / entry["open_clip_train"]["whole_command_samples_per_s"],
            3,
        )
        entry["load_avg_1min_after"] = _load()
        rounds.append(entry)
    torch_threads = int(env["OMP_NUM_THREADS"])
    step_ms = step_comparison(work, args.batch_size, args.step_blocks, torch_threads)

    def median(run: str, key: str) -> float | None:
        values = [r[run][key] for r in rounds if r.get(run) and r[run].get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    import torch

    cpu_it, cpu_oc = (
        median("mmpt_image_text", "cpu_ms_per_sample"),
        median("open_clip_train", "cpu_ms_per_sample"),
    )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "open_clip_torch": _version("open_clip_torch"),
            "torch_threads": args.threads,
            "load_avg_1min": [r["load_avg_1min_before"] for r in rounds]
            + [rounds[-1]["load_avg_1min_after"]],
        },
        "batch_size": args.batch_size,
        "workers": args.workers,
        "warmup_steps": args.warmup,
        "steps_measured": args.steps,
        "repeats": args.repeats,
        "train_rows": n_train,
        "mmpt_image_text_samples_per_s": median("mmpt_image_text", "samples_per_s"),
        "open_clip_train_samples_per_s": median("open_clip_train", "samples_per_s"),
        "ratio": statistics.median(r["ratio"] for r in rounds),
        # the whole command (start-up, every step, checkpoint, exit): what a user waits for
        "mmpt_whole_command_samples_per_s": median("mmpt_image_text", "whole_command_samples_per_s"),
        "open_clip_train_whole_command_samples_per_s": median(
            "open_clip_train", "whole_command_samples_per_s"
        ),
        "whole_command_ratio": statistics.median(r["whole_command_ratio"] for r in rounds),
        "mmpt_first_step_s": round(
            statistics.median(r["mmpt_image_text"]["startup_s"]["first_step"] for r in rounds), 2
        ),
        "mmpt_trimodal_samples_per_s": median("mmpt_trimodal", "samples_per_s"),
        "mmpt_data_wait_frac": median("mmpt_image_text", "data_wait_frac"),
        "open_clip_train_data_wait_frac": median("open_clip_train", "data_wait_frac"),
        "mmpt_trimodal_data_wait_frac": median("mmpt_trimodal", "data_wait_frac"),
        # CPU ms of the trainer and its workers per sample over the measured steps: less load-sensitive.
        "mmpt_image_text_cpu_ms_per_sample": cpu_it,
        "open_clip_train_cpu_ms_per_sample": cpu_oc,
        "cpu_ratio": round(cpu_oc / cpu_it, 3) if cpu_it and cpu_oc else None,  # > 1: mmpt needs less CPU
        "mmpt_trimodal_cpu_ms_per_sample": median("mmpt_trimodal", "cpu_ms_per_sample"),
        "step_ms": step_ms,
        "step_ratio": round(step_ms["open_clip_train"] / step_ms["mmpt"], 3),  # > 1: mmpt's step is faster
        "rounds": rounds,
    }


# ---- data ---------------------------------------------------------------------------------------------


def prepare_data(work: Path, needed: int, max_rows: int) -> int:
    """The same train rows as a Lance dataset (work/demo.lance) and as PNG files + work/train.csv.

    Only train-split demo rows with an image, a caption and audio are kept, so every row of a batch feeds
    every tower in both trainers. Reuses what an earlier call with the same arguments wrote. Returns the
    number of rows.
    """
    from mmpt.store.synthetic import demo_row, demo_schema
    from mmpt.store.write import rows_to_batch, write_batches

    lance_path, csv_path, images, stamp = (
        work / "demo.lance",
        work / "train.csv",
        work / "images",
        work / "rows.json",
    )
    key = {"needed": needed, "max_rows": max_rows}
    if stamp.exists() and lance_path.exists() and json.loads(stamp.read_text())["key"] == key:
        return int(json.loads(stamp.read_text())["rows"])

    rows: list[dict[str, Any]] = []
    index = 0
    while index < max_rows if max_rows else len(rows) < needed:
        row = demo_row(index)
        index += 1
        if row["split"] == "train" and all(row[m] is not None for m in ("image", "text", "audio")):
            rows.append(row)
    images.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", encoding="utf-8") as f:
        f.write("filepath\ttitle\n")
        for row in rows:
            png = images / f"{row['id']}.png"
            png.write_bytes(row["image"])
            f.write(f"{png.resolve()}\t{row['text']}\n")
    _clear(lance_path)
    schema = demo_schema()
    write_batches(
        (rows_to_batch(rows[i : i + 512], schema) for i in range(0, len(rows), 512)), lance_path, schema
    )
    stamp.write_text(json.dumps({"key": key, "rows": len(rows)}))
    return len(rows)


# ---- the trainers --------------------------------------------------------------------------------------


def run_mmpt(
    work: Path, args: argparse.Namespace, env: dict[str, str], pairs: str, name: str
) -> dict[str, Any]:
    """`mmpt pretrain` in a subprocess; per-step times from RUN/metrics.jsonl (one train event per step)."""
    run = work / "runs" / name
    _clear(run)
    total = args.warmup + args.steps
    sets = {
        "train.eval_after": "false",
        "train.log_every": "1",
        "train.precision": "'fp32'",
        "data.image_augment": "true",
        "train.ckpt_every": str(total),
        "train.lr": str(LR),
        "train.weight_decay": str(WD),
        "train.betas": str(list(BETAS)),
        "train.eps": str(EPS),
        "train.warmup_steps": str(LR_WARMUP),
        "train.grad_clip": str(GRAD_CLIP),
    }
    cmd = [
        sys.executable,
        "-m",
        "mmpt",
        "pretrain",
        "--data",
        str(work / "demo.lance"),
        "--run",
        str(run),
        "--model",
        "tiny",
        "--pairs",
        pairs,
        "--max-steps",
        str(total),
        "--batch-size",
        str(args.batch_size),
        "--device",
        "cpu",
        "--num-workers",
        str(args.workers),
        "--quiet",
        *[x for k, v in sets.items() for x in ("--set", f"{k}={v}")],
    ]
    metrics = run / "metrics.jsonl"

    def train_events() -> list[dict[str, Any]]:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        return [e for e in map(json.loads, filter(None, lines)) if e.get("kind") == "train"]

    launch = time.time()
    wall, window_cpu = _run(cmd, env, work / f"{name}.log", lambda: len(train_events()), args.warmup, total)
    steps = {e["step"]: e for e in train_events()}
    measured = range(args.warmup + 1, total + 1)
    times = [args.batch_size / steps[s]["samples_per_s"] for s in measured]
    waits = [steps[s]["data_wait_frac"] * t for s, t in zip(measured, times, strict=True)]
    summary = _summary(times, waits, args.batch_size, wall, window_cpu, total)
    start = next(json.loads(line) for line in metrics.read_text().splitlines() if '"start"' in line)
    # seconds from launch to each start-up mark the loop wrote (see benchmarks/startup.py), and to step 1
    marks = {k: v - launch for k, v in start.get("startup", {}).items()}
    marks.update(start=start["time"] - launch, first_step=steps[1]["time"] - launch)
    summary["startup_s"] = {k: round(v, 2) for k, v in marks.items()}
    return summary


def run_open_clip_train(work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """open_clip_train in a subprocess (this file in wrapper mode); per-step times from its out.log."""
    from mmpt.models.config import ModelConfig

    config = work / "open_clip_config" / f"{OPEN_CLIP_MODEL}.json"
    config.parent.mkdir(exist_ok=True)
    config.write_text(json.dumps(ModelConfig().clip, indent=2))  # the tiny preset's open_clip config
    logs = work / "runs" / "open_clip_train"
    _clear(logs)
    total = args.warmup + args.steps
    oc_args = [
        "--train-data",
        str(work / "train.csv"),
        "--dataset-type",
        "csv",
        "--csv-separator",
        "\t",
        "--csv-img-key",
        "filepath",
        "--csv-caption-key",
        "title",
        "--model",
        OPEN_CLIP_MODEL,
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--epochs",
        "1",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--lr",
        str(LR),
        "--wd",
        str(WD),
        "--beta1",
        str(BETAS[0]),
        "--beta2",
        str(BETAS[1]),
        "--eps",
        str(EPS),
        "--warmup",
        str(LR_WARMUP),
        "--grad-clip-norm",
        str(GRAD_CLIP),
        "--log-every-n-steps",
        "1",
        "--logs",
        str(logs),
        "--name",
        "run",
        "--save-frequency",
        "0",
        "--zeroshot-frequency",
        "0",
        "--val-frequency",
        "0",
        "--report-to",
        "",
        "--seed",
        "0",
    ]
    out_log = logs / "run" / "out.log"

    def step_lines() -> list[re.Match[str]]:
        text = out_log.read_text() if out_log.exists() else ""
        return [m for m in map(OPEN_CLIP_STEP.search, text.splitlines()) if m]

    cmd = [sys.executable, os.path.abspath(__file__), WRAPPER_FLAG, str(config), *oc_args]
    wall, window_cpu = _run(
        cmd, env, work / "open_clip_train.log", lambda: len(step_lines()), args.warmup, total
    )
    # With --log-every-n-steps 1 each line's "Batch (t)" / "Data (t)" averages cover exactly its own step.
    steps = {int(m[1]) // args.batch_size: (float(m[2]), float(m[3])) for m in step_lines()}
    measured = range(args.warmup + 1, total + 1)
    if any(s not in steps for s in measured):
        sys.exit(f"open_clip_train did not log every step; see {out_log}")
    return _summary(
        [steps[s][1] for s in measured],
        [steps[s][0] for s in measured],
        args.batch_size,
        wall,
        window_cpu,
        total,
    )


def open_clip_train_wrapper(config: str, oc_args: list[str]) -> None:
    """Register the model config JSON with open_clip, then run open_clip's trainer in this process."""
    import open_clip
    from open_clip_train.main import main as open_clip_main

    open_clip.add_model_config(config)
    open_clip_main(oc_args)


def step_comparison(work: Path, batch_size: int, blocks: int, threads: int) -> dict[str, float]:
    """Median ms per training step of open_clip_train's step and mmpt's on one fixed batch, in this process."""
    import math

    import open_clip
    import torch

    from mmpt.models import build_model
    from mmpt.models.config import ModelConfig
    from mmpt.train.config import TrainConfig
    from mmpt.train.loss import ContrastiveLoss
    from mmpt.train.optim import build_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    open_clip.add_model_config(str(work / "open_clip_config" / f"{OPEN_CLIP_MODEL}.json"))
    oc_model = open_clip.create_model(OPEN_CLIP_MODEL)
    # open_clip_train/main.py: no weight decay on gains, biases and the logit scale; torch's default AdamW.
    no_decay = [
        p
        for n, p in oc_model.named_parameters()
        if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    ]
    decay = [p for p in oc_model.parameters() if all(p is not q for q in no_decay)]
    oc_opt = torch.optim.AdamW(
        [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": WD}],
        lr=LR,
        betas=BETAS,
        eps=EPS,
    )
    oc_loss = open_clip.ClipLoss()

    model_cfg = ModelConfig()
    mm_model = build_model(model_cfg)
    mm_opt = build_optimizer(mm_model, TrainConfig(lr=LR, weight_decay=WD, betas=list(BETAS), eps=EPS))
    mm_loss = ContrastiveLoss(["image_text"], None, "clip")
    mm_params = [p for g in mm_opt.param_groups for p in g["params"]]

    size, length = model_cfg.clip["vision_cfg"]["image_size"], model_cfg.clip["text_cfg"]["context_length"]
    pixels, tokens = torch.randn(batch_size, 3, size, size), torch.randint(1, 49000, (batch_size, length))
    ones = torch.ones(batch_size, dtype=torch.bool)
    batch = {"image": pixels, "text": tokens, "image_mask": ones, "text_mask": ones}

    def oc_step() -> None:
        oc_opt.zero_grad(set_to_none=True)
        oc_loss(*oc_model(pixels, tokens)).backward()
        torch.nn.utils.clip_grad_norm_(oc_model.parameters(), GRAD_CLIP, norm_type=2.0)
        oc_opt.step()
        with torch.no_grad():
            oc_model.logit_scale.clamp_(0, math.log(100))

    def mm_step() -> None:
        mm_opt.zero_grad(set_to_none=True)
        loss, _ = mm_loss(
            mm_model(batch), {"image": ones, "text": ones}, mm_model.logit_scale, mm_model.logit_bias
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mm_params, GRAD_CLIP)
        mm_opt.step()
        with torch.no_grad():
            for p in mm_model.logit_scale.values():
                p.clamp_(0, model_cfg.max_logit_scale)

    def block(step: Callable[[], None], n: int = 10) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - t0) / n * 1e3

    block(oc_step, 3), block(mm_step, 3)  # warm-up
    times: dict[str, list[float]] = {"open_clip_train": [], "mmpt": []}
    for _ in range(blocks):
        times["open_clip_train"].append(block(oc_step))
        times["mmpt"].append(block(mm_step))
    return {k: round(statistics.median(v), 1) for k, v in times.items()}


# ---- helpers -------------------------------------------------------------------------------------------


def _run(
    cmd: list[str], env: dict[str, str], log: Path, steps_done: Callable[[], int], warmup: int, total: int
) -> tuple[float, float | None]:
    """Run `cmd` to completion (output to `log`), polling `steps_done`; returns the process's wall seconds
    and the CPU seconds its process tree spent from the end of step `warmup` to the end of step `total`
    (None without psutil)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    t0 = time.perf_counter()
    start: dict[int, float] | None = None  # pid -> CPU seconds at the end of step `warmup`
    last: dict[int, float] = {}  # pid -> CPU seconds when last seen (a worker may exit before the end mark)
    end: dict[int, float] | None = None
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        tree = psutil.Process(proc.pid) if psutil else None
        while proc.poll() is None:
            time.sleep(0.05)
            if tree is None or end is not None:
                continue
            done = steps_done()
            if start is None and done >= warmup:
                start = _tree_cpu(tree)
            if start is not None:
                last.update(_tree_cpu(tree))
                if done >= total:
                    end = dict(last)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(
            f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}); see {log}:\n"
            + "\n".join(log.read_text().splitlines()[-20:])
        )
    window = sum(cpu - start.get(pid, 0.0) for pid, cpu in end.items()) if start and end else None
    return wall, window


def _tree_cpu(process: Any) -> dict[int, float]:
    """pid -> user + system CPU seconds of a psutil.Process and each live descendant (DataLoader workers)."""
    out = {}
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except Exception:  # psutil.NoSuchProcess: it exited between listing and reading
            continue
        out[p.pid] = t.user + t.system
    return out


def _summary(
    times: list[float],
    waits: list[float],
    batch_size: int,
    wall: float,
    window_cpu: float | None,
    total_steps: int,
) -> dict[str, Any]:
    """One run: samples/s over the measured steps (and at its median step, which ignores the odd step
    stretched by other load), the share of that time spent waiting for data, CPU ms per sample over the
    measured steps, the whole process's wall seconds (start-up included) and the samples/s of the whole
    command (every step's samples over that wall time)."""
    samples = len(times) * batch_size
    return {
        "samples_per_s": round(samples / sum(times), 1),
        "median_step_samples_per_s": round(batch_size / statistics.median(times), 1),
        "data_wait_frac": round(sum(waits) / sum(times), 3),
        "cpu_ms_per_sample": round(1e3 * window_cpu / samples, 2) if window_cpu is not None else None,
        "process_wall_s": round(wall, 1),
        "whole_command_samples_per_s": round(total_steps * batch_size / wall, 1),
    }


def _clear(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == WRAPPER_FLAG:
        open_clip_train_wrapper(sys.argv[2], sys.argv[3:])
    else:
        main()
