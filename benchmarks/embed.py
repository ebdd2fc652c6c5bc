"""Embedding export benchmark: `embed_run` end to end against the bare model forward on the same batches. Prints JSON.

    python benchmarks/embed.py                          # 2000 demo rows, tiny model, batch 256, workers 0/1/2
    python benchmarks/embed.py --run RUN --rows 5000    # a trained run's model instead of a fresh tiny one
    python benchmarks/embed.py --model small --rows 512 --workers 0   # a fresh model of another preset

1. forward: the loader's batches (all of image, text and audio) are decoded into memory first, then only
   the model's forward on them is timed (`model(batch)` under no_grad, bf16 autocast on CUDA, outputs
   copied to host numpy as the export does).
2. export: `embed_run` on a fresh copy of the dataset over the same rows and batch size: decode (in
   DataLoader workers when workers > 0) + forward + durable staging of each chunk + one commit per
   column. The model is already in memory for both, so neither counts loading it. Without workers,
   the next batches are decoded in a background thread (`mmpt.embed.compute.prefetched`).
3. serial: decode then forward batch after batch in one thread, without staging (what the export
   would do without its prefetch thread or workers).

ratio = export_rows_per_s / forward_rows_per_s for the best worker count; the goal is >= 0.9. On a
shared CPU the wall-clock figures drift with the load; CPU-time figures (this process only) are given
for workers = 0, and `--threads` fixes torch's intra-op threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from mmpt.data.loader import build_loader
from mmpt.embed.api import embed_run
from mmpt.embed.compute import _embed_batch, pick_device
from mmpt.embed.encoder import Encoder, load_model
from mmpt.models import build_model, preset_config, save_model
from mmpt.store.dataset import open_dataset
from mmpt.store.synthetic import make_demo_dataset


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    info = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_1min_before"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def decoded_batches(encoder: Encoder, data: str, batch_size: int) -> tuple[list[dict], list[str], float]:
    """The loader's batches of every row, decoded into memory (and the seconds one core took to decode them)."""
    ds = open_dataset(data)
    modalities = [m for m in encoder.modalities if m in ds.modalities()]
    loader = build_loader(ds, encoder.spec, modalities, None, batch_size, train=False, drop_last=False)
    t0 = time.perf_counter()
    batches = list(loader)
    return batches, modalities, time.perf_counter() - t0


def forward_seconds(encoder: Encoder, batches: list[dict], modalities: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of the bare forward over pre-decoded batches (outputs copied to host, as the export does)."""
    sync = torch.cuda.synchronize if encoder.device.type == "cuda" else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in batches:
        _embed_batch(encoder.model, batch, modalities, encoder.device)
    sync()
    return time.perf_counter() - t0, time.process_time() - c0


def serial_seconds(encoder: Encoder, data: str, batch_size: int, modalities: list[str]) -> float:
    """Seconds of decode then forward, batch after batch in one thread (no prefetch, no staging): the
    reference for what overlapping the decode gains."""
    ds = open_dataset(data)
    loader = build_loader(ds, encoder.spec, modalities, None, batch_size, train=False, drop_last=False)
    t0 = time.perf_counter()
    for batch in loader:
        _embed_batch(encoder.model, batch, modalities, encoder.device)
    return time.perf_counter() - t0


def export_seconds(
    encoder: Encoder, run: str, data: str, scratch: Path, batch_size: int, workers: int
) -> tuple[float, float]:
    """(wall, CPU of this process) seconds of `embed_run` on a fresh copy of the dataset: decode + forward +
    staging + commit. With workers, the decoding CPU is spent in them and is not counted here."""
    copy = scratch / f"export-w{workers}.lance"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data, copy)
    t0, c0 = time.perf_counter(), time.process_time()
    embed_run(run, copy, batch_size=batch_size, num_workers=workers, encoder=encoder, progress=False)
    seconds = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(copy, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to try for the export.")
    parser.add_argument(
        "--run", default=None, help="A trained run or checkpoint (default: a fresh model of --model)."
    )
    parser.add_argument("--model", default="tiny", help="Preset of the fresh model when --run is not given.")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--repeats", type=int, default=2, help="Interleaved passes of each measurement (best kept)."
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)."
    )
    parser.add_argument(
        "--scratch", default=None, help="Folder for the dataset copies (default: a temp dir)."
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="mmpt-embed-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    data = str(scratch / "bench.lance")
    make_demo_dataset(data, n_rows=args.rows, seed=0, overwrite=True)
    run = args.run
    if run is None:
        torch.manual_seed(0)
        run = str(
            save_model(
                build_model(preset_config(args.model)), scratch / args.model / "checkpoints" / "step-0000000"
            )
        )
    encoder = load_model(run, args.device)
    device = pick_device(args.device)
    measured_on = machine(device)  # the load average before the passes

    batches, modalities, decode_s = decoded_batches(encoder, data, args.batch_size)
    rows = sum(len(b["ids"]) for b in batches)
    forward_seconds(encoder, batches[:1], modalities)  # warm-up
    workers = [int(w) for w in args.workers.split(",")]
    inf = (float("inf"), float("inf"))
    forward, export, serial = inf, dict.fromkeys(workers, inf), float("inf")
    for _ in range(args.repeats):  # interleaved, best of each: the machine's load drifts between passes
        forward = min(forward, forward_seconds(encoder, batches, modalities))
        serial = min(serial, serial_seconds(encoder, data, args.batch_size, modalities))
        for w in workers:
            export[w] = min(export[w], export_seconds(encoder, run, data, scratch, args.batch_size, w))
    best = min(workers, key=lambda w: export[w][0])
    # CPU time is steadier than wall time on a shared machine; it compares the work done, in-process only
    cpu = {"forward_cpu_s": round(forward[1], 2)}
    if 0 in workers:
        cpu.update(
            export_cpu_s_workers0=round(export[0][1], 2),
            ratio_cpu_workers0=round(forward[1] / export[0][1], 3),
        )
    load_after = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "rows": rows,
                "batch_size": args.batch_size,
                "model": f"{args.model} (untrained)" if args.run is None else args.run,
                "modalities": modalities,
                "forward_rows_per_s": round(rows / forward[0], 1),
                "export_rows_per_s": round(rows / export[best][0], 1),
                "ratio": round(forward[0] / export[best][0], 3),
                "workers": best,
                "export_rows_per_s_by_workers": {w: round(rows / export[w][0], 1) for w in workers},
                **cpu,
                "serial_decode_forward_rows_per_s": round(rows / serial, 1),
                "decode_rows_per_s_one_core": round(rows / decode_s, 1),
                "repeats": args.repeats,
                "machine": {**measured_on, "load_1min_after": load_after},
            },
            indent=2,
        )
    )
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
