"""The cost of checkpoint integrity (issue 14): time per checkpoint save and load with and without sha256
hashing, for a preset's model and AdamW state built on CPU. Prints JSON.

    python benchmarks/checkpoint_hash.py                      # base preset (~1 GB weights + ~2 GB optimizer)
    python benchmarks/checkpoint_hash.py --preset tiny --repeats 1   # a quick smoke run

Save (RunDir.save_checkpoint, as the training loop calls it: model.safetensors + model.json, optim.pt,
state.json, then checksums.json, then the rename) in three variants, alternated and repeated:
`hashed` is mmpt as shipped (every file fsynced, hashed into checksums.json); `fsync_only` fsyncs the files
but hashes nothing; `plain` does neither (mmpt before checksums). hashed - fsync_only is the hashing itself.

Load, as a fresh process would (the in-process digest cache is cleared first), with verification on and off:
`resume` = read_checkpoint_state + load_state into a built model (what --resume reads); `model` = load_model
(eval, embed, search: includes building the model). Files are read from the page cache (just written): the
cold-disk read cost, the same with or without hashing, is not part of either figure. Peak memory is about
4x the weights (model, gradients, two AdamW moments) plus the optimizer state read back.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


@contextlib.contextmanager
def hashing(mode: str) -> Iterator[None]:
    """Run with checksums as shipped ("hashed"), with files fsynced but not hashed ("fsync_only"), or with
    neither ("plain"): for saving. For loading, "plain" also skips verification."""
    import mmpt.checksums as checksums
    import mmpt.models.checkpoint as checkpoint
    import mmpt.runs.rundir as rundir

    def fsync_only(folder: str | Path, names: Any = None) -> dict[str, Any]:
        folder = Path(folder)
        for path in folder.iterdir():
            if path.is_file():
                checksums.fsync_path(path)
        checksums.fsync_path(folder)
        return {}

    def no_manifest(folder: str | Path, names: Any = None) -> dict[str, Any]:
        return {}

    def unverified(folder: str | Path, names: Any = None) -> bool:
        return False

    saved = (rundir.write_manifest, checkpoint.write_manifest, rundir.verify_files, checkpoint.verify_files)
    if mode != "hashed":
        writer = fsync_only if mode == "fsync_only" else no_manifest
        rundir.write_manifest = checkpoint.write_manifest = writer
    if mode == "plain":
        rundir.verify_files = checkpoint.verify_files = unverified
    try:
        yield
    finally:
        rundir.write_manifest, checkpoint.write_manifest, rundir.verify_files, checkpoint.verify_files = saved


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build(preset: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The preset's model and a checkpoint's `extra` with a populated AdamW state (one step on zero grads)."""
    from mmpt.models import build_model, preset_config

    torch.manual_seed(0)
    model = build_model(preset_config(preset))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    extra = {"optimizer": optimizer.state_dict(), "scheduler": {}, "rng": {"torch": torch.get_rng_state()}}
    return model, extra


def save_once(run: Any, model: torch.nn.Module, extra: dict[str, Any], step: int) -> Path:
    """One checkpoint as the training loop writes it (keeping only the newest)."""
    from mmpt.models.checkpoint import save_model

    return run.save_checkpoint(step, lambda folder: save_model(model, folder), extra, {}, keep=1)


def resume_load(model: torch.nn.Module, ckpt: Path) -> None:
    """What --resume reads: state.json and optim.pt, then the weights into the built model."""
    from mmpt.models.checkpoint import load_state
    from mmpt.runs import read_checkpoint_state

    read_checkpoint_state(ckpt)
    load_state(model, ckpt / "model.safetensors")


def model_load(model: torch.nn.Module, ckpt: Path) -> None:
    """What eval, embed and search do: build the model from model.json and load its weights."""
    from mmpt.models.checkpoint import load_model

    load_model(ckpt)


def figures(preset: str, repeats: int, folder: Path) -> dict[str, Any]:
    import mmpt.checksums as checksums
    from mmpt.runs import RunDir

    t = time.perf_counter()
    model, extra = build(preset)
    build_s = time.perf_counter() - t
    run = RunDir.create(folder / "run", {"train": {}})
    save: dict[str, list[float]] = {"hashed": [], "fsync_only": [], "plain": []}
    load: dict[str, dict[str, list[float]]] = {k: {"hashed": [], "plain": []} for k in ("resume", "model")}
    step = 0
    for _ in range(repeats):
        for mode in save:
            step += 1
            with hashing(mode):
                save[mode].append(timed(functools.partial(save_once, run, model, extra, step)))
        step += 1
        ckpt = save_once(run, model, extra, step)  # a hashed one, to load
        for mode in ("hashed", "plain"):
            for kind, fn in (("resume", resume_load), ("model", model_load)):
                checksums._digests.clear()  # as in a new process: nothing verified yet
                with hashing(mode):
                    load[kind][mode].append(timed(functools.partial(fn, model, ckpt)))
    sizes = {p.name: p.stat().st_size for p in ckpt.iterdir() if p.is_file()}
    med = {k: statistics.median(v) for k, v in save.items()}
    out: dict[str, Any] = {
        "preset": preset,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "checkpoint_mb": {k: round(v / 2**20, 1) for k, v in sorted(sizes.items())},
        "build_s": round(build_s, 1),
        "repeats": repeats,
        "save_s": {k: round(v, 3) for k, v in med.items()},
        "save_hashing_s": round(med["hashed"] - med["fsync_only"], 3),
        "save_overhead_pct": round(100 * (med["hashed"] / med["plain"] - 1), 1),
    }
    for kind, runs in load.items():
        m = {k: statistics.median(v) for k, v in runs.items()}
        out[f"load_{kind}_s"] = {k: round(v, 3) for k, v in m.items()}
        out[f"load_{kind}_overhead_pct"] = round(100 * (m["hashed"] / m["plain"] - 1), 1)
    t = time.perf_counter()
    checksums._digests.clear()
    for p in ckpt.iterdir():
        if p.is_file():
            checksums.sha256_file(p)
    total = sum(sizes.values())
    out["sha256_mb_per_s"] = round(total / 2**20 / (time.perf_counter() - t), 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base", help="tiny | small | base (default: base)")
    parser.add_argument("--repeats", type=int, default=3, help="Saves and loads per variant (median kept).")
    parser.add_argument("--dir", help="Folder to write checkpoints in (default: a temp folder).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        out = figures(args.preset, args.repeats, Path(tmp))
    out["machine"] = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_1min": round(os.getloadavg()[0], 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
