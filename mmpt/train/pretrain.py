"""Pretraining as a Python call: resolve a run config, create or reopen the run directory, train, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmpt.binaries import require_compiled
from mmpt.errors import ConfigError
from mmpt.runs import RESUME_FILES, RunDir
from mmpt.train.config import RunConfig, apply_overrides, load_config, normalise_pairs
from mmpt.train.loop import TrainResult, train
from mmpt.train.reporting import reporting


def resolve_config(
    base: RunConfig | None = None,
    *,
    config_file: str | Path | None = None,
    data: str | None = None,
    model: str | None = None,
    overrides: list[str] | None = None,
    **train_fields: Any,
) -> RunConfig:
    """Defaults, then a TOML file, then flags: `model` is a preset, open_clip name or config JSON path;
    `train_fields` are TrainConfig fields (None values are ignored); `overrides` are section.key=value."""
    from mmpt.models.presets import resolve_model_config

    cfg = base or (load_config(config_file) if config_file else RunConfig())
    if model:
        cfg.model = resolve_model_config(model)
    elif not cfg.model.name:
        cfg.model = resolve_model_config("tiny")
    if data:
        cfg.data.dataset = str(data)
    for key, value in train_fields.items():
        if value is None:
            continue
        if not hasattr(cfg.train, key):
            raise ConfigError(f"unknown train setting {key!r}")
        setattr(cfg.train, key, value)
    cfg = apply_overrides(cfg, list(overrides or []))
    cfg.train.pairs = normalise_pairs(cfg.train.pairs)
    if not cfg.data.dataset:
        raise ConfigError("no dataset given: pass --data DATASET (or set [data] dataset in the config file)")
    return cfg


def pretrain(cfg: RunConfig, run: str | Path, *, restart: bool = False, **kwargs: Any) -> TrainResult:
    """Start a new run in `run` and train it to the end (or until stopped); then evaluate on the test split.

    `restart` starts over in a folder that already holds a run (e.g. one killed before its first checkpoint),
    discarding its checkpoints, metrics and reports first; `saved_config(run)` gives its settings.
    """
    require_compiled()  # before the run folder is created: a broken install leaves nothing behind
    run_dir = _create_on_main(run, cfg, restart)
    with reporting(cfg, run_dir) as trackers:  # --report-to: each metrics event also goes to the trackers
        result = train(cfg, run_dir, **trackers.hook(kwargs))
        _evaluate_after(cfg, result, kwargs.get("progress", True))
    return result


def resume(
    run: str | Path, *, data: str | None = None, model: str | None = None, **kwargs: Any
) -> TrainResult:
    """Continue a stopped or killed run exactly where its latest checkpoint left it."""
    run_dir = RunDir.open(run)
    cfg = load_config(run_dir.config_path)
    if data and Path(data).resolve() != Path(cfg.data.dataset).resolve() and data != cfg.data.dataset:
        raise ConfigError(f"{run} was trained on {cfg.data.dataset}, not {data}; start a new run instead")
    if model:
        from mmpt.models.presets import resolve_model_config

        if resolve_model_config(model).to_dict() != cfg.model.to_dict():
            raise ConfigError(
                f"{run} was made with model {cfg.model.name!r}, not {model!r}; start a new run instead"
            )
    require_resumable(run_dir, "pretrain")
    with reporting(cfg, run_dir, resume=True) as trackers:
        result = train(cfg, run_dir, resume=True, **trackers.hook(kwargs))
        _evaluate_after(cfg, result, kwargs.get("progress", True))
    return result


def require_resumable(run_dir: RunDir, verb: str) -> None:
    """Refuse a resume while another process trains the run, or when it has no intact checkpoint (one line
    naming the checkpoints skipped as corrupt and the --restart way out)."""
    live = run_dir.live_pid()
    if live is not None:
        raise ConfigError(f"{run_dir.path} is being trained by process {live}; it cannot be resumed twice")
    ckpt, skipped = run_dir.find_checkpoint(need=RESUME_FILES)
    if ckpt is None:
        why = (
            "; ".join(skipped) if skipped else "none was written: the run stopped before its first checkpoint"
        )
        raise ConfigError(
            f"{run_dir.path} has no intact checkpoint to resume from ({why}); start it over with "
            f"`mmpt {verb} --run {run_dir.path} --restart`"
        )


def saved_config(run: str | Path, *, data: str | None = None) -> RunConfig | None:
    """The config a run folder was started with (None if it has none), the base of a --restart: a `data`
    given again means a new start on that dataset's latest version, so the saved version pin is dropped."""
    path = Path(run) / "config.toml"
    if not path.is_file():
        return None
    try:
        cfg = load_config(path)
    except ConfigError:
        if data:  # an unreadable saved config: the flags given set the new run up
            return None
        raise
    if data:
        cfg.data.version = 0
    return cfg


def _create_on_main(run: str | Path, cfg: RunConfig, restart: bool = False) -> RunDir:
    """Only rank 0 creates the folder; the other ranks of a torchrun job just point at it."""
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        return RunDir.create(run, cfg.to_dict(), restart=restart)
    return RunDir(run)


def _evaluate_after(cfg: RunConfig, result: TrainResult, progress: bool = True) -> None:
    import os

    if result.stopped or not cfg.train.eval_after or int(os.environ.get("RANK", "0")) != 0:
        return
    from mmpt.eval.run import evaluate_run

    evaluate_run(result.run.path, split=cfg.data.test_split, name="final", progress=progress)
