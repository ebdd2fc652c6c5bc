"""Fine-tuning benchmark: throughput with frozen image and text towers vs full fine-tuning, and zero-shot
accuracy on demo data before fine-tuning, after, and after WiSE-FT. Prints JSON.

    python benchmarks/finetune.py                    # demo data (600 rows), tiny preset, CPU or GPU
    python benchmarks/finetune.py --rows 3000 --steps 40 --batch-size 64

Throughput: the same model (image, text and a new audio tower, as when binding audio to a pretrained
image-text pair) trains the same pairs (audio-text, image-audio) for the same steps, once with the image and
text towers frozen and once with everything trainable, the runs alternated `--repeats` times (a shared
machine's load changes). `*_samples_per_s` is the median of the training loop's own figure (data loading
included, each run's first log window left out); `*_step_samples_per_s` times forward + backward +
optimiser step on one batch already in memory (the model alone), the two models' steps interleaved. Zero-shot: mean test accuracy over image
and audio of a briefly pretrained run, of its fine-tune with the text tower frozen, and of WiSE-FT at alpha.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from mmpt.train.config import RunConfig
from mmpt.train.finetune import finetune, headline, resolve_finetune_config
from mmpt.train.pretrain import pretrain, resolve_config


def _loop_rates(run: Path) -> list[float]:
    """samples/s of the loop's train events after the first (which includes start-up)."""
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [e["samples_per_s"] for e in events if e.get("kind") == "train"][1:]


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _step_rates(cfgs: dict, steps: int) -> dict[str, float]:
    """samples/s of forward + backward + optimiser step on one in-memory batch (the model alone), the
    configurations' steps interleaved so that a change in machine load hits both alike."""
    from mmpt.data.loader import build_loader
    from mmpt.store.dataset import open_dataset
    from mmpt.train.finetune import load_source, resolve_freeze
    from mmpt.train.freeze import apply_freeze
    from mmpt.train.loss import ContrastiveLoss
    from mmpt.train.optim import build_optimizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    setups, batch = {}, None
    for name, cfg in cfgs.items():
        src = load_source(cfg.finetune, seed=0)
        apply_freeze(src.model, resolve_freeze(cfg.finetune, src), keep_trainable=src.fresh)
        model = src.model.to(device).train()
        pairs = [p.replace("-", "_") for p in cfg.train.pairs]
        mods = sorted({m for p in pairs for m in p.split("_")})
        if batch is None:
            ds = open_dataset(cfg.data.dataset)
            batch = next(
                iter(
                    build_loader(
                        ds.lance, model.spec, mods, "train", cfg.train.batch_size, train=True, seed=0
                    )
                )
            )
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        setups[name] = (
            model,
            build_optimizer(model, cfg.train),
            ContrastiveLoss(pairs, {}, "clip"),
            {m: batch[f"{m}_mask"] for m in mods},
        )

    def step(name: str) -> float:
        model, opt, loss_fn, masks = setups[name]
        t0 = time.perf_counter()
        loss, _ = loss_fn(model(batch), masks, model.logit_scale, model.logit_bias)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {name: [] for name in setups}
    for i in range(steps + 1):
        for name in setups:
            t = step(name)
            if i:  # the first step of each is warm-up
                times[name].append(t)
    return {name: len(batch["ids"]) / _median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=600, help="demo dataset rows")
    ap.add_argument("--pretrain-steps", type=int, default=60)
    ap.add_argument("--steps", type=int, default=20, help="fine-tuning steps per throughput run")
    ap.add_argument("--repeats", type=int, default=2, help="throughput runs per configuration, alternated")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--wise-alpha", type=float, default=0.5)
    ap.add_argument("--out", default="", help="working folder (default: a temp folder)")
    args = ap.parse_args()

    from mmpt.store.synthetic import make_demo_dataset

    out = Path(args.out or tempfile.mkdtemp(prefix="mmpt-ft-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    data = make_demo_dataset(out / "demo.lance", n_rows=args.rows, seed=0, overwrite=True)
    quick = ["data.num_workers=0", "train.log_every=5"]

    pcfg = resolve_config(
        data=str(data.uri),
        model="tiny",
        max_steps=args.pretrain_steps,
        batch_size=args.batch_size,
        overrides=[*quick, "train.warmup_steps=10", "train.eval_after=false"],
    )
    t0 = time.perf_counter()
    pretrain(pcfg, out / "pretrained", progress=False)
    pretrain_s = time.perf_counter() - t0

    # zero-shot before / after / WiSE-FT: the acceptance recipe (text tower frozen), default fine-tune settings
    zcfg = resolve_finetune_config(
        source=str(out / "pretrained"),
        data=str(data.uri),
        batch_size=args.batch_size,
        overrides=quick,
        finetune={"freeze": ["text"], "wise_alpha": [args.wise_alpha]},
    )
    t0 = time.perf_counter()
    z = finetune(zcfg, out / "zero-shot", progress=False)
    zero_shot_s = time.perf_counter() - t0
    wise = z.wise[next(iter(z.wise))]

    # throughput: bind a new audio tower to the pretrained image-text pair, frozen vs full
    from mmpt.eval.run import load_run_model
    from mmpt.models.openclip_io import export_openclip

    pair, _ = export_openclip(load_run_model(out / "pretrained"), out / "pair.safetensors")
    cfgs = {
        name: resolve_finetune_config(
            source=str(pair),
            data=str(data.uri),
            max_steps=args.steps,
            batch_size=args.batch_size,
            pairs=["audio-text", "image-audio"],
            overrides=[*quick, "train.eval_after=false", "train.early_stop_metric=''", "data.val_split=''"],
            finetune={"add": ["audio"], "freeze": freeze},
        )
        for name, freeze in (("frozen", ["image", "text"]), ("full", ["none"]))
    }
    loop: dict[str, list[float]] = {name: [] for name in cfgs}
    for r in range(args.repeats):  # alternate the runs so that a change in machine load hits both alike
        for name, cfg in cfgs.items():
            run = out / f"throughput-{name}-{r}"
            finetune(RunConfig.from_dict(cfg.to_dict()), run, progress=False)
            loop[name] += _loop_rates(run)
    rates = {name: _median(v) for name, v in loop.items()}
    step_rates = _step_rates(cfgs, max(5, args.steps // 2))

    report = {
        "frozen_samples_per_s": round(rates["frozen"], 1),
        "full_samples_per_s": round(rates["full"], 1),
        "speedup": round(rates["frozen"] / rates["full"], 2),
        "frozen_step_samples_per_s": round(step_rates["frozen"], 1),
        "full_step_samples_per_s": round(step_rates["full"], 1),
        "step_speedup": round(step_rates["frozen"] / step_rates["full"], 2),
        "zero_shot_metric": headline(z.before)[0],
        "zero_shot_before": round(headline(z.before)[1], 4),
        "zero_shot_after": round(headline(z.after)[1], 4),
        "zero_shot_wise": round(headline(wise)[1], 4),
        "wise_alpha": args.wise_alpha,
        "zero_shot_per_modality": {
            stage: {m: round(r["accuracy"], 4) for m, r in rep["zero_shot"].items()}
            for stage, rep in (("before", z.before), ("after", z.after), ("wise", wise))
        },
        "settings": {
            "rows": args.rows,
            "pretrain_steps": args.pretrain_steps,
            "steps": args.steps,
            "repeats": args.repeats,
            "batch_size": args.batch_size,
            "preset": "tiny",
            "finetune_steps": z.train.step,
            "best_step": z.train.best_step,
            "pretrain_s": round(pretrain_s, 1),
            "zero_shot_finetune_s": round(zero_shot_s, 1),
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "load_avg_start": [round(x, 2) for x in load_before],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "out": str(out),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
