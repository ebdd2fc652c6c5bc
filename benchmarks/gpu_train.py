"""GPU training step: samples/s, MFU, data-wait fraction and peak memory of mmpt (and open_clip_train
beside it) for the small and base presets, image-text and tri-modal; prints one JSON object.

    python benchmarks/gpu_train.py [--presets small,base] [--modes image-text,trimodal] [--batch-size 256]
                                   [--steps 30] [--warmup 10] [--workers 8] [--compile both|auto|on|off]
                                   [--compile-scope blocks|towers]
                                   [--peak-tflops T] [--no-open-clip] [--out DIR]
    python benchmarks/gpu_train.py --smoke      # CPU, tiny preset, 3 steps: checks the script end to end

What it measures, per (preset, mode, compile):

* mmpt: `mmpt.train.pretrain` in this process on a Lance dataset of demo rows that all hold an image, a
  caption and audio (benchmarks/train_throughput.py writes them), bf16 autocast on CUDA, fused AdamW,
  DataLoader workers as given, no eval. The figures cover steps warmup+1 .. warmup+steps from the loop's
  per-step metrics: samples/s, the share of that time spent waiting for the next batch (`data_wait_frac`)
  and the peak CUDA memory allocated (`peak_mem_gb`; on CPU the process's peak RSS).
* MFU: the FLOPs of one training step (forward, loss and backward of a batch of that size), counted with
  torch.utils.flop_counter.FlopCounterMode on the eager model, x steps/s, / the device's dense bf16 peak
  (PEAK_TFLOPS by device name, or --peak-tflops). FlopCounterMode counts matmuls, convolutions and SDPA;
  with token dropout on it counts the shorter sequences actually run, and the captions as each trainer runs
  them: mmpt's cut to the batch's longest (mmpt.models.text_trim), open_clip_train's at full context length.
* open_clip_train (image-text only: it has no audio) on the same rows (PNG + CSV), the preset's open_clip
  model config, batch, workers and precision (amp_bf16), with --torchcompile when mmpt compiles; its
  per-step "Batch (t)" / "Data (t)" log lines and the peak memory printed by its wrapper at exit; FLOPs counted
  the same way on open_clip's own model.

`--compile both` (the default on CUDA) runs mmpt eager and compiled, which is what decides whether
train.compile=auto (on for CUDA) pays off for a preset; `first_steps_s` (the warm-up steps, compilation
included) and `--compile-scope towers` against the default `blocks` show what regional compilation saves.
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

import train_throughput as tt  # noqa: E402  (rows, CSV and open_clip_train's log format are shared)

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets; first match wins.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)
MODES = {"image-text": "image-text", "trimodal": "image-text,audio-text,image-audio"}
GPU_WRAPPER = "_open_clip_train_gpu"  # argv[1] that runs open_clip_train and prints its peak memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small,base")
    parser.add_argument("--modes", default="image-text,trimodal")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="steps measured per run")
    parser.add_argument("--warmup", type=int, default=10, help="steps run first, not measured (compile)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (both trainers)")
    parser.add_argument("--compile", choices=["both", "auto", "on", "off"], default="both")
    parser.add_argument(
        "--compile-scope", choices=["blocks", "towers"], default="blocks", help="mmpt's train.compile_scope"
    )
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="override the device's bf16 peak")
    parser.add_argument("--no-open-clip", action="store_true", help="skip open_clip_train")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--smoke", action="store_true", help="CPU check: tiny preset, batch 8, 1+2 steps, no workers"
    )
    parser.add_argument("--out", type=Path, help="work folder, kept (default: a temporary folder)")
    args = parser.parse_args()
    if args.smoke:
        args.presets, args.batch_size, args.warmup, args.steps = "tiny", 8, 1, 2
        args.workers, args.device, args.compile = 0, "cpu", "off"
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="mmpt-gpu-bench-") as tmp:
            result = run_benchmark(args, Path(tmp))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        result = run_benchmark(args, args.out)
    print(json.dumps(result, indent=2))


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = args.peak_tflops or device_peak_tflops(name)
    total = args.warmup + args.steps
    n_rows = tt.prepare_data(work, total * args.batch_size, 0)
    compiles = {"both": [False, True], "on": [True], "off": [False], "auto": [device == "cuda"]}[args.compile]

    results: list[dict[str, Any]] = []
    for preset in args.presets.split(","):
        for mode in args.modes.split(","):
            flops = step_flops(work, preset, MODES[mode], args.batch_size, device)
            for compiled in compiles:
                r = measure_mmpt(work, preset, MODES[mode], compiled, device, args)
                results.append(_with_mfu({"preset": preset, "mode": mode, **r}, flops, args.batch_size, peak))
            if mode == "image-text" and not args.no_open_clip:
                oc_flops = open_clip_step_flops(work, preset, args.batch_size, device)
                for compiled in compiles:
                    r = measure_open_clip_train(work, preset, compiled, device, args)
                    results.append(
                        _with_mfu({"preset": preset, "mode": mode, **r}, oc_flops, args.batch_size, peak)
                    )
    return {
        "device": name,
        "peak_tflops_bf16": peak or None,
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "steps_measured": args.steps,
        "workers": args.workers,
        "train_rows": n_rows,
        "results": results,
    }


def device_peak_tflops(name: str) -> float:
    """The dense bf16 peak of a CUDA device by its name (0.0 when unknown: MFU is then left out)."""
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return 0.0


# ---- FLOPs ---------------------------------------------------------------------------------------------


def _synthetic_batch(
    spec: Any, modalities: list[str], batch: int, device: str, tokens: Any
) -> dict[str, Any]:
    import torch

    x: dict[str, Any] = {
        "image": torch.randn(batch, 3, spec.image_size, spec.image_size),
        "text": tokens,
        "audio": torch.randn(batch, spec.clip_samples),
    }
    out: dict[str, Any] = {}
    for m in modalities:
        out[m] = x[m].to(device)
        out[f"{m}_mask"] = torch.ones(batch, dtype=torch.bool, device=device)
    return out


def _count(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(work: Path, preset: str, pairs: str, batch: int, device: str) -> int:
    """FLOPs of one mmpt training step (forward, loss, backward) on a batch where every row has every modality,
    its captions the dataset's first `batch`, tokenized as the loader does (cut to the longest when the text
    tower allows it: mmpt.models.text_trim), so the count is what the measured steps run."""
    import lance
    import torch

    from mmpt.models import build_model, preset_config
    from mmpt.models.tokenizer import build_tokenizer
    from mmpt.train.config import normalise_pairs
    from mmpt.train.loss import ContrastiveLoss

    names = normalise_pairs(pairs)
    modalities = sorted({m for p in names for m in p.split("-")})
    model = build_model(preset_config(preset)).to(device).train()
    loss_fn = ContrastiveLoss([p.replace("-", "_") for p in names])
    captions = lance.dataset(str(work / "demo.lance")).to_table(columns=["text"], limit=batch)["text"]
    tokens = build_tokenizer(model.spec, trim=True)([str(t) for t in captions.to_pylist()])
    x = _synthetic_batch(model.spec, modalities, batch, device, tokens)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = loss_fn(model(x), {m: x[f"{m}_mask"] for m in modalities}, model.logit_scale)
        loss.backward()

    return _count(step)


def open_clip_step_flops(work: Path, preset: str, batch: int, device: str) -> int:
    """FLOPs of one open_clip_train step (CLIP forward, ClipLoss, backward) on the preset's open_clip config."""
    import open_clip
    import torch

    from mmpt.models import preset_config

    open_clip.add_model_config(str(_open_clip_config(work, preset)))
    model = open_clip.create_model(_open_clip_name(preset)).to(device).train()
    cfg = preset_config(preset).clip
    size, length = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"]
    pixels = torch.randn(batch, 3, size, size, device=device)
    tokens = torch.randint(1, 49000, (batch, length), device=device)
    loss_fn = open_clip.ClipLoss()

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = loss_fn(*model(pixels, tokens))
        loss.backward()

    return _count(step)


def _with_mfu(r: dict[str, Any], flops: int, batch: int, peak_tflops: float) -> dict[str, Any]:
    steps_per_s = r["samples_per_s"] / batch
    r["gflops_per_step"] = round(flops / 1e9, 1)
    r["achieved_tflops"] = round(flops * steps_per_s / 1e12, 3)
    r["mfu"] = round(flops * steps_per_s / (peak_tflops * 1e12), 4) if peak_tflops else None
    return r


# ---- the trainers --------------------------------------------------------------------------------------


def measure_mmpt(
    work: Path, preset: str, pairs: str, compiled: bool, device: str, args: argparse.Namespace
) -> dict[str, Any]:
    """mmpt's pretrain in this process; figures from its per-step metrics over the measured steps."""
    from mmpt.train.pretrain import pretrain, resolve_config

    total = args.warmup + args.steps
    run = work / "runs" / f"mmpt-{preset}-{pairs.count(',')}-{int(compiled)}"
    tt._clear(run)
    cfg = resolve_config(
        data=str(work / "demo.lance"),
        model=preset,
        pairs=pairs,
        max_steps=total,
        batch_size=args.batch_size,
        device=device,
        overrides=[
            "train.log_every=1",
            "train.eval_after=false",
            f"train.ckpt_every={total}",
            f"train.compile={str(compiled).lower()}",
            f"train.compile_scope={args.compile_scope}",
            f"data.num_workers={args.workers}",
            "data.image_augment=true",
        ],
    )
    _free(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    pretrain(cfg, run, progress=False)
    wall = time.perf_counter() - t0
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    steps = {e["step"]: e for e in events if e.get("kind") == "train"}
    measured = [steps[s] for s in range(args.warmup + 1, total + 1)]
    times = [args.batch_size / e["samples_per_s"] for e in measured]
    waits = [e["data_wait_frac"] * t for e, t in zip(measured, times, strict=True)]
    return {
        "trainer": "mmpt",
        "compile": compiled,
        "compile_scope": args.compile_scope if compiled else None,
        "samples_per_s": round(len(times) * args.batch_size / sum(times), 1),
        "step_ms_median": round(1e3 * statistics.median(times), 1),
        "data_wait_frac": round(sum(waits) / sum(times), 3),
        "peak_mem_gb": round(max(e.get("mem_gb", 0.0) for e in steps.values()), 2),
        "first_steps_s": round(
            sum(args.batch_size / steps[s]["samples_per_s"] for s in range(1, args.warmup + 1)), 1
        ),
        "run_wall_s": round(wall, 1),
    }


def measure_open_clip_train(
    work: Path, preset: str, compiled: bool, device: str, args: argparse.Namespace
) -> dict[str, Any]:
    """open_clip_train in a subprocess on the same rows, model config, batch and workers."""
    logs = work / "runs" / f"open_clip_train-{preset}-{int(compiled)}"
    tt._clear(logs)
    precision = "amp_bf16" if device == "cuda" else "fp32"
    oc_args = [
        *("--train-data", str(work / "train.csv"), "--dataset-type", "csv", "--csv-separator", "\t"),
        *("--csv-img-key", "filepath", "--csv-caption-key", "title", "--model", _open_clip_name(preset)),
        *("--batch-size", str(args.batch_size), "--workers", str(args.workers), "--epochs", "1"),
        *("--precision", precision, "--device", device, "--log-every-n-steps", "1", "--logs", str(logs)),
        *("--name", "run", "--save-frequency", "0", "--zeroshot-frequency", "0", "--val-frequency", "0"),
        *("--report-to", "", "--seed", "0", "--lr", str(tt.LR), "--wd", str(tt.WD), "--warmup", "50"),
        *(["--torchcompile"] if compiled else []),
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    log = work / f"open_clip_train-{preset}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), GPU_WRAPPER, str(_open_clip_config(work, preset))]
    with log.open("w") as out:
        proc = subprocess.run([*cmd, *oc_args], env=env, stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"open_clip_train failed (exit {proc.returncode}); see {log}")
    out_log = (logs / "run" / "out.log").read_text()
    lines = [m for m in map(tt.OPEN_CLIP_STEP.search, out_log.splitlines()) if m]
    steps = {int(m[1]) // args.batch_size: (float(m[2]), float(m[3])) for m in lines}
    measured = [steps[s] for s in range(args.warmup + 1, args.warmup + args.steps + 1) if s in steps]
    if len(measured) < args.steps:
        sys.exit(f"open_clip_train logged {len(measured)} of {args.steps} measured steps; see {out_log}")
    times, waits = [b for _, b in measured], [d for d, _ in measured]
    peak = [
        json.loads(line)["peak_mem_gb"] for line in text.splitlines() if line.startswith('{"peak_mem_gb"')
    ]
    return {
        "trainer": "open_clip_train",
        "compile": compiled,
        "samples_per_s": round(len(times) * args.batch_size / sum(times), 1),
        "step_ms_median": round(1e3 * statistics.median(times), 1),
        "data_wait_frac": round(sum(waits) / sum(times), 3),
        "peak_mem_gb": peak[-1] if peak else None,
    }


def open_clip_train_gpu_wrapper(config: str, oc_args: list[str]) -> None:
    """Run open_clip_train (train_throughput's wrapper), then print the peak memory it reached as JSON."""
    import resource

    import torch

    tt.open_clip_train_wrapper(config, oc_args)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"peak_mem_gb": round(peak, 2)}), flush=True)


# ---- helpers -------------------------------------------------------------------------------------------


def _open_clip_name(preset: str) -> str:
    return f"mmpt-{preset}-bench"


def _open_clip_config(work: Path, preset: str) -> Path:
    """The preset's open_clip model config as a JSON file open_clip can register (same towers as mmpt's)."""
    from mmpt.models import preset_config

    path = work / "open_clip_config" / f"{_open_clip_name(preset)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(preset_config(preset).clip, indent=2))
    return path


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == GPU_WRAPPER:
        open_clip_train_gpu_wrapper(sys.argv[2], sys.argv[3:])
    else:
        main()
