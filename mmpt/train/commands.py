"""CLI verbs that train: `mmpt pretrain` (and, from the fine-tuning module, `finetune` and `sweep`)."""

from __future__ import annotations

import json

import click

DEVICES = click.Choice(["auto", "cpu", "cuda"])


def training_options(f):
    """Flags shared by every training verb; any other config field is reachable with --set."""
    options = [
        click.option("--data", "data", help="Lance dataset to train on."),
        click.option("--run", "run", help="Run directory to create."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML run config."),
        click.option("--epochs", type=int),
        click.option("--max-steps", type=int, help="Stop after this many optimiser steps."),
        click.option("--batch-size", type=int, help="Per-process batch size."),
        click.option("--lr", type=float),
        click.option("--weight-decay", type=float),
        click.option("--pairs", help="Pairs to train, e.g. image-text,audio-text,image-audio."),
        click.option("--loss", type=click.Choice(["clip", "siglip"])),
        click.option("--device", type=DEVICES),
        click.option("--seed", type=int),
        click.option("--num-workers", type=int, help="DataLoader worker processes."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Set any config field, e.g. --set train.warmup_steps=100 (repeatable)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--json", "as_json", is_flag=True, help="Print the final figures as JSON."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def train_fields(kw: dict) -> dict:
    """TrainConfig fields from CLI keywords (the data/run/config/override ones are handled apart)."""
    names = ("epochs", "max_steps", "batch_size", "lr", "weight_decay", "pairs", "loss", "device", "seed")
    return {k: kw[k] for k in names if kw.get(k) is not None}


def apply_data_flags(cfg, kw: dict) -> None:
    if kw.get("num_workers") is not None:
        cfg.data.num_workers = kw["num_workers"]


def report(result, as_json: bool) -> None:
    """Print where the run is and its last figures."""
    from mmpt.eval.run import load_report_if_any

    final = load_report_if_any(result.run.path, "final")
    summary = {"run": str(result.run.path), "step": result.step, "stopped": result.stopped,
               "last": {k: v for k, v in result.last.items() if k != "kind"}, "eval": final}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    state = "stopped (resume with --resume)" if result.stopped else "finished"
    click.echo(f"run {result.run.path}: {state} at step {result.step}")
    if final:
        from mmpt.eval.report import format_report

        click.echo(format_report(final))


@click.command("pretrain")
@training_options
@click.option("--model", help="tiny | small | base | an open_clip model name | an open_clip config JSON.")
@click.option("--resume", "resume_dir", help="Continue this run directory from its latest checkpoint.")
def pretrain_command(resume_dir: str | None, model: str | None, **kw) -> None:
    """Pretrain a contrastive text-image-audio model; `torchrun --nproc_per_node=N -m mmpt pretrain` runs DDP."""
    from mmpt.errors import ConfigError
    from mmpt.train import pretrain as api

    if resume_dir:
        result = api.resume(resume_dir, data=kw["data"], model=model, progress=not kw["quiet"])
        report(result, kw["as_json"])
        return
    if not kw["run"]:
        raise ConfigError("no run directory given: pass --run RUN (or --resume RUN to continue one)")
    cfg = api.resolve_config(config_file=kw["config_file"], data=kw["data"], model=model,
                             overrides=list(kw["overrides"]), **train_fields(kw))
    apply_data_flags(cfg, kw)
    result = api.pretrain(cfg, kw["run"], progress=not kw["quiet"])
    report(result, kw["as_json"])
