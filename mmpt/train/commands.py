"""CLI verbs that train: `mmpt pretrain` (and, from the fine-tuning module, `finetune` and `sweep`)."""

from __future__ import annotations

import json

import click

DEVICES = click.Choice(["auto", "cpu", "cuda"])


def training_options(f):
    """Flags shared by every training verb; any other config field is reachable with --set."""
    options = [
        click.option("--data", "data", help="Lance dataset to train on."),
        click.option(
            "--run",
            "--run-dir",
            "run",
            help="Run directory to create (under torchrun spell it --run-dir: torchrun's own "
            "parser takes --run for its --run-path).",
        ),
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
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="SECTION.KEY=VALUE",
            help="Set any config field, e.g. --set train.warmup_steps=100 (repeatable).",
        ),
        click.option(
            "--report-to",
            "report_to",
            metavar="TRACKERS",
            help="Also send every metrics event to tensorboard,wandb,mlflow,trackio (see docs/tracking.md).",
        ),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--json", "as_json", is_flag=True, help="Print the final figures as JSON."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def train_fields(kw: dict) -> dict:
    """TrainConfig fields from CLI keywords (the data/run/config/override ones are handled apart)."""
    names = ("epochs", "max_steps", "batch_size", "lr", "weight_decay", "pairs", "loss", "device", "seed")
    return {k: kw[k] for k in (*names, "report_to") if kw.get(k) is not None}


def apply_data_flags(cfg, kw: dict) -> None:
    if kw.get("num_workers") is not None:
        cfg.data.num_workers = kw["num_workers"]


def report(result, as_json: bool) -> None:
    """Print where the run is and its last figures."""
    from mmpt.eval.run import load_report_if_any

    final = load_report_if_any(result.run.path, "final")
    summary = {
        "run": str(result.run.path),
        "step": result.step,
        "stopped": result.stopped,
        "last": {k: v for k, v in result.last.items() if k != "kind"},
        "eval": final,
    }
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
@click.option(
    "--model", help="tiny | tiny-conv | small | base | an open_clip model name | an open_clip config JSON."
)
@click.option(
    "--resume",
    "resume_dir",
    help="Continue this run directory from its newest intact checkpoint (a corrupt one is skipped, and said).",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Start the --run folder over from step 0 although it holds a run (e.g. one killed before its first "
    "checkpoint): its checkpoints, metrics and reports are deleted first. Its saved settings are used "
    "unless --config is given; flags given override them (--data: that dataset's latest version).",
)
def pretrain_command(resume_dir: str | None, model: str | None, restart: bool, **kw) -> None:
    """Pretrain a contrastive text-image-audio model; `torchrun --nproc_per_node=N -m mmpt pretrain` runs DDP.

    A killed run continues with --resume RUN; one that cannot (no intact checkpoint) starts over with
    --run RUN --restart.
    """
    from mmpt.errors import ConfigError
    from mmpt.train import pretrain as api

    if resume_dir and restart:
        raise ConfigError(
            f"--resume continues a run and --restart starts it over: pass --run {resume_dir} --restart"
        )
    if resume_dir:
        result = api.resume(resume_dir, data=kw["data"], model=model, progress=not kw["quiet"])
        report(result, kw["as_json"])
        return
    if not kw["run"]:
        raise ConfigError("no run directory given: pass --run RUN (or --resume RUN to continue one)")
    base = api.saved_config(kw["run"], data=kw["data"]) if restart and not kw["config_file"] else None
    cfg = api.resolve_config(
        base,
        config_file=kw["config_file"],
        data=kw["data"],
        model=model,
        overrides=list(kw["overrides"]),
        **train_fields(kw),
    )
    apply_data_flags(cfg, kw)
    result = api.pretrain(cfg, kw["run"], restart=restart, progress=not kw["quiet"])
    report(result, kw["as_json"])


def _csv(values: tuple[str, ...] | str | None) -> list[str] | None:
    """Repeatable and/or comma-separated option values as one list (None when not given)."""
    if not values:
        return None
    items = [values] if isinstance(values, str) else list(values)
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


def _mapping(values: tuple[str, ...], cast, flag: str) -> dict | None:
    """`("image=0.5", "text=0.1")` -> {"image": 0.5, "text": 0.1} (None when not given)."""
    from mmpt.errors import ConfigError

    out = {}
    for item in _csv(values) or []:
        key, sep, raw = item.partition("=")
        try:
            out[key.strip()] = cast(raw)
        except ValueError:
            raise ConfigError(f"bad {flag} {item!r}: expected TOWER=VALUE") from None
        if not sep:
            raise ConfigError(f"bad {flag} {item!r}: expected TOWER=VALUE")
    return out or None


def finetune_options(f):
    """Flags of the fine-tune settings ([finetune] section), shared by `finetune` and `sweep`."""
    options = [
        click.option(
            "--from",
            "source",
            help="mmpt run or checkpoint folder, open_clip .pt/.safetensors file, openclip:MODEL/TAG "
            "(e.g. openclip:ViT-B-32/laion2b_s34b_b79k) or openclip:hf-hub:ORG/NAME from the local cache, "
            "or hf:FOLDER|ORG/NAME, a text encoder (hf:minilm = the packaged all-MiniLM-L6-v2).",
        ),
        click.option(
            "--recipe",
            help="Binding preset under --config and flags: imagebind | languagebind | trimodal "
            "(docs/pretrained.md).",
        ),
        click.option(
            "--model",
            help="Model config of an open_clip file without a JSON beside it, or of the new "
            "towers of an hf: source (preset, open_clip name or config JSON).",
        ),
        click.option(
            "--text-tower",
            help="Replace the text tower by this HF text encoder: hf:ORG/NAME (HF cache), a folder, or minilm.",
        ),
        click.option(
            "--audio-tower",
            help="Add or replace the audio tower by this pretrained HF audio encoder (CLAP, AST, Whisper, any "
            "AutoModel with a feature extractor): hf:ORG/NAME (HF cache) or hf:FOLDER.",
        ),
        click.option("--context-length", type=int, help="Tokens of a new HF text tower (default 32)."),
        click.option("--add", multiple=True, help="Add a freshly initialised tower, e.g. --add audio."),
        click.option(
            "--freeze",
            multiple=True,
            help="Towers to freeze: image,text,audio,heads | none | auto (default; see docs/finetune.md).",
        ),
        click.option(
            "--freeze-blocks",
            multiple=True,
            metavar="TOWER=N",
            help="Freeze the stem and first N blocks of a tower (repeatable).",
        ),
        click.option(
            "--norms-only",
            is_flag=True,
            default=None,
            help="Train only norms, output projections and logit scales.",
        ),
        click.option(
            "--tower-lr", multiple=True, metavar="TOWER=X", help="Learning-rate multiplier of a tower."
        ),
        click.option("--layer-decay", type=float, help="Layer-wise lr decay (e.g. 0.75; 1 = off)."),
        click.option(
            "--wise-alpha",
            type=float,
            multiple=True,
            help="Also write and evaluate the WiSE-FT interpolation RUN/wise-A/ (repeatable).",
        ),
        click.option(
            "--prompt", help="Zero-shot prompt template of the reports, e.g. 'a photo of a {label}'."
        ),
        click.option(
            "--early-stop",
            "early_stop_metric",
            help="Validation metric keeping the best checkpoint: val_loss (default), val_loss/<pair>, "
            "val_zero_shot_acc, val_zero_shot_image_acc, ...; 'none' disables.",
        ),
        click.option(
            "--patience",
            "early_stop_patience",
            type=int,
            help="Validations without improvement before stopping (0: never stop early).",
        ),
        click.option("--task", type=click.Choice(["contrastive", "classify"])),
        click.option("--label-col", help="classify: the label column (default label)."),
        click.option(
            "--towers", "classify_towers", help="classify: towers feeding the head, e.g. image,audio."
        ),
        click.option(
            "--probe/--full",
            "probe",
            default=None,
            help="classify: linear probe on frozen towers (default) or full fine-tune.",
        ),
        click.option("--class-weight", type=click.Choice(["balanced", "none"])),
        click.option("--head-lr", type=float, help="classify: learning rate of the head."),
        click.option("--head-epochs", type=int, help="classify: full-batch epochs of the probe head."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def finetune_config_from_flags(kw: dict):
    """The RunConfig of a fine-tune from the shared and fine-tune flags; also whether --pairs was given."""
    from mmpt.train.finetune import resolve_finetune_config

    fields = train_fields(kw)
    metric = kw.get("early_stop_metric")
    if metric is not None:
        fields["early_stop_metric"] = "" if metric == "none" else metric
        fields["early_stop_mode"] = "min" if "loss" in metric else "max"
    if kw.get("early_stop_patience") is not None:
        fields["early_stop_patience"] = kw["early_stop_patience"]
    finetune = {
        "text_tower": kw.get("text_tower"),
        "audio_tower": kw.get("audio_tower"),
        "context_length": kw.get("context_length"),
        "add": _csv(kw.get("add")),
        "freeze": _csv(kw.get("freeze")),
        "freeze_blocks": _mapping(kw.get("freeze_blocks") or (), int, "--freeze-blocks"),
        "norms_only": kw.get("norms_only"),
        "tower_lr": _mapping(kw.get("tower_lr") or (), float, "--tower-lr"),
        "layer_decay": kw.get("layer_decay"),
        "wise_alpha": list(kw["wise_alpha"]) if kw.get("wise_alpha") else None,
        "prompt": kw.get("prompt"),
        "task": kw.get("task"),
        "label_col": kw.get("label_col"),
        "towers": _csv(kw.get("classify_towers")),
        "head": None if kw.get("probe") is None else ("probe" if kw["probe"] else "full"),
        "class_weight": kw.get("class_weight"),
        "head_lr": kw.get("head_lr"),
        "head_epochs": kw.get("head_epochs"),
    }
    cfg = resolve_finetune_config(
        source=kw.get("source") or "",
        data=kw.get("data"),
        config_file=kw.get("config_file"),
        model=kw.get("model"),
        overrides=list(kw.get("overrides") or ()),
        finetune=finetune,
        recipe=kw.get("recipe"),
        **fields,
    )
    apply_data_flags(cfg, kw)
    return cfg, kw.get("pairs") is not None


def finetune_report(result, as_json: bool) -> None:
    """Print the fine-tune's headline figure before / after (and WiSE-FT), or everything as JSON."""
    from mmpt.train.finetune import headline

    name, before = headline(result.before)
    _, after = headline(result.after)
    tr = result.train
    summary = {
        "run": str(result.run.path),
        "step": tr.step if tr else None,
        "stopped": tr.stopped if tr else False,
        "best_step": tr.best_step if tr else None,
        "headline": {
            "metric": name,
            "before": before,
            "after": after,
            **{k: headline(v)[1] for k, v in result.wise.items()},
        },
        "before": result.before,
        "eval": result.after,
        "wise": result.wise,
        "comparison": result.comparison,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=float))
        return
    if tr is not None:
        state = "stopped (resume with --resume)" if tr.stopped else "finished"
        best = f", best checkpoint step {tr.best_step} restored" if tr.best_step else ""
        click.echo(f"run {result.run.path}: {state} at step {tr.step}{best}")
    else:
        click.echo(f"run {result.run.path}: classifier trained")
    if result.after and result.after.get("meta", {}).get("task") == "classify":
        from mmpt.eval.report import format_report

        click.echo(format_report(result.after))
        return

    def fmt(x):
        return "-" if x is None else f"{x:.4f}"

    if before is not None or after is not None:
        delta = f" ({after - before:+.4f})" if before is not None and after is not None else ""
        click.echo(f"test {name}: before {fmt(before)} -> after {fmt(after)}{delta}")
    for wname, report in result.wise.items():
        click.echo(f"test {name}: {wname} {fmt(headline(report)[1])}")
    if result.comparison:
        from mmpt.eval.compare import format_comparison

        click.echo(format_comparison(result.comparison, contains="accuracy"))
        click.echo(
            f"full comparison: {result.run.eval_dir / 'compare-before.json'}; "
            f"report: {result.run.eval_dir / 'final.html'}"
        )


@click.command("finetune")
@training_options
@finetune_options
@click.option(
    "--resume",
    "resume_dir",
    help="Continue this fine-tune run from its newest intact checkpoint (a corrupt one is skipped, and said).",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Start the --run folder over although it holds a run (e.g. one killed before its first checkpoint): "
    "what it holds is deleted first. Its saved config is the base unless --config is given; flags override it.",
)
def finetune_command(resume_dir: str | None, restart: bool, **kw) -> None:
    """Fine-tune pretrained weights: contrastive with freeze policies, or a classification head (--task classify)."""
    from pathlib import Path

    from mmpt.errors import ConfigError
    from mmpt.store.parent_watch import SWEEP_DRIVER, die_with_env
    from mmpt.train import finetune as api

    die_with_env(SWEEP_DRIVER)  # a sweep's trial process ends with the sweep driver, even one killed with -9

    if resume_dir and restart:
        raise ConfigError(
            f"--resume continues a run and --restart starts it over: pass --run {resume_dir} --restart"
        )
    if resume_dir:
        finetune_report(api.resume_finetune(resume_dir, progress=not kw["quiet"]), kw["as_json"])
        return
    if not kw["run"]:
        raise ConfigError("no run directory given: pass --run RUN (or --resume RUN to continue one)")
    saved = Path(kw["run"]) / "config.toml"
    from_saved = restart and not kw["config_file"] and saved.is_file()
    cfg, pairs_given = finetune_config_from_flags({**kw, "config_file": saved} if from_saved else kw)
    if from_saved and kw["data"]:
        cfg.data.version = 0  # a dataset given again: its latest version, as for a new run
    result = api.finetune(cfg, kw["run"], pairs_given=pairs_given, restart=restart, progress=not kw["quiet"])
    finetune_report(result, kw["as_json"])


@click.command("sweep")
@training_options
@finetune_options
@click.option("--out", "out", required=True, help="Sweep folder: a run per trial, study.db and results.json.")
@click.option(
    "--grid",
    "grid",
    multiple=True,
    metavar="NAME=V1,V2|LOW:HIGH",
    help="Values to try, or a range: lr, weight_decay (wd), freeze (towers joined by +), layer_decay, "
    "epochs, batch_size, warmup_steps or any SECTION.FIELD (repeatable).",
)
@click.option(
    "--space", "space_file", type=click.Path(dir_okay=False), help="Search space TOML (docs/tracking.md)."
)
@click.option(
    "--sampler",
    type=click.Choice(["tpe", "grid", "random"]),
    help="tpe (default), or grid: every combination (the default when only value lists and no --trials).",
)
@click.option("--trials", type=int, default=0, help="Trials the study should hold (grid: all of it).")
@click.option("--random", "random_n", type=int, default=0, help="Same as --sampler random --trials N.")
@click.option(
    "--metric",
    default="headline",
    show_default=True,
    help="Score of a trial: a key of RUN/eval/final.json (e.g. zero_shot.image.accuracy), headline = "
    "mean zero-shot accuracy, or a validation metric (val_loss, val_zero_shot_acc, ...).",
)
@click.option(
    "--mode", type=click.Choice(["max", "min"]), help="Better is max (default) or min (for losses)."
)
@click.option(
    "--pruner",
    type=click.Choice(["median", "hyperband", "none"]),
    default="median",
    show_default=True,
    help="Stop trials whose validation metric falls behind.",
)
@click.option(
    "--prune-on", "prune_metric", help="Validation metric the pruner follows (default: --early-stop's)."
)
@click.option(
    "--prune-after",
    "prune_startup",
    type=int,
    default=5,
    show_default=True,
    help="Trials done before pruning starts.",
)
@click.option(
    "--prune-warmup", type=int, default=0, help="Validations each trial gets before it can be pruned."
)
@click.option("--parallel", type=int, default=1, help="Trials at once, each its own process.")
@click.option("--processes", is_flag=True, help="Run each trial as its own `mmpt finetune` process.")
def sweep_command(
    out: str,
    grid: tuple[str, ...],
    space_file: str | None,
    sampler: str | None,
    trials: int,
    random_n: int,
    metric: str,
    mode: str | None,
    pruner: str,
    prune_metric: str | None,
    prune_startup: int,
    prune_warmup: int,
    parallel: int,
    processes: bool,
    **kw,
) -> None:
    """Search fine-tuning settings with Optuna (TPE, grid or random; pruning); rerun to resume or extend."""
    from mmpt.errors import MmptError
    from mmpt.train.sweep import format_results, search_space
    from mmpt.train.sweep_study import SweepOptions, run_sweep

    cfg, pairs_given = finetune_config_from_flags(kw)
    if random_n:
        sampler, trials = sampler or "random", trials or random_n
    options = SweepOptions(
        metric=metric,
        mode=mode or "",
        sampler=sampler or "",
        trials=trials,
        pruner=pruner,
        prune_metric=prune_metric or "",
        prune_startup=prune_startup,
        prune_warmup=prune_warmup,
        parallel=parallel,
        processes=processes,
        seed=cfg.train.seed,
    )
    results = run_sweep(
        cfg,
        out,
        search_space(list(grid), space_file),
        options,
        pairs_given=pairs_given,
        progress=False,
        echo=(lambda s: None) if kw["as_json"] else click.echo,
    )
    if kw["as_json"]:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(format_results(results))
        click.echo(f"results: {out}/results.json; study: optuna-dashboard {results['study']}")
    if results["stopped"]:
        raise MmptError(f"the sweep stopped before its {results['trials']} trials; rerun it to continue")
