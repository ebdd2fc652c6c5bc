"""Hyperparameter sweeps over fine-tuning: the search space, each trial's config and score, the results table.

The space comes from `--grid NAME=V1,V2` (values to choose from) or `--grid NAME=LOW:HIGH` (a range) flags and
from a TOML file (`--space`); mmpt.train.sweep_study runs the trials on an Optuna study. A trial is a real
fine-tune into SWEEP_DIR/<trial>/, scored by a key of its final eval report or by a validation metric.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmpt.errors import ConfigError
from mmpt.train.config import DataConfig, FinetuneConfig, RunConfig, TrainConfig, read_toml

# short sweepable name -> (section, field); any other scalar field is reachable as SECTION.FIELD
SHORT: dict[str, tuple[str, str]] = {
    "lr": ("train", "lr"),
    "weight_decay": ("train", "weight_decay"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "warmup_steps": ("train", "warmup_steps"),
    "layer_decay": ("finetune", "layer_decay"),
    "freeze": ("finetune", "freeze"),
}
ALIASES = {"wd": "weight_decay"}
LOG_UNIFORM = ("lr", "weight_decay")  # ranges of these are log-uniform unless told otherwise
HEADLINE = "headline"
SECTIONS: dict[str, type] = {"data": DataConfig, "train": TrainConfig, "finetune": FinetuneConfig}


@dataclass
class Dim:
    """One sweepable setting: a list of values (raw strings, as typed) or a numeric range low..high."""

    name: str
    values: list[str] = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def setting(name: str) -> tuple[str, str, Callable[[str], Any], str]:
    """(section, field, parser, kind) of a sweepable name; kind is float, int, bool, str or towers."""
    key = ALIASES.get(name, name)
    if key in SHORT:
        section, fname = SHORT[key]
    elif key.count(".") == 1 and key.split(".")[0] in SECTIONS:
        section, fname = key.split(".")
    else:
        raise ConfigError(
            f"cannot sweep {name!r}: choose from {', '.join(SHORT)} or a SECTION.FIELD of [data], [train] or "
            "[finetune]"
        )
    if fname == "freeze" and section == "finetune":
        return section, fname, lambda v: [t for t in v.split("+") if t] or ["none"], "towers"
    default = {f.name: f for f in dataclasses.fields(SECTIONS[section])}.get(fname)
    if default is None:
        raise ConfigError(f"cannot sweep {name!r}: [{section}] has no field {fname!r}")
    value = getattr(SECTIONS[section](), fname)
    if isinstance(value, bool):
        return section, fname, _bool, "bool"
    if isinstance(value, int | float | str):
        kind = type(value).__name__
        return section, fname, {"int": int, "float": float, "str": str}[kind], kind
    raise ConfigError(
        f"cannot sweep {name!r}: only single-value settings (numbers, text, freeze) are sweepable"
    )


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(value)
    return value.lower() == "true"


def _canonical(name: str) -> str:
    key = ALIASES.get(name.strip(), name.strip())
    return key


def _numeric(name: str) -> str:
    """The kind (int or float) of a setting given as a range; ConfigError for any other."""
    _, _, _, kind = setting(name)
    if kind not in ("int", "float"):
        raise ConfigError(f"{name} takes listed values, not a range")
    return kind


def _range(name: str, low: float, high: float, log: bool | None, step: float | None) -> Dim:
    kind = _numeric(name)
    if not low < high:
        raise ConfigError(f"bad range for {name}: {low:g}:{high:g} (low must be below high)")
    log = (name in LOG_UNIFORM and low > 0) if log is None else log
    if log and low <= 0:
        raise ConfigError(f"bad range for {name}: a log range needs low > 0")
    if log and step:
        raise ConfigError(f"bad range for {name}: step and log cannot both be set")
    return Dim(name, low=float(low), high=float(high), log=log, step=step, integer=kind == "int")


def _values(name: str, values: list[str], flag: str) -> Dim:
    _, _, parse, _ = setting(name)
    if not values:
        raise ConfigError(f"bad {flag} for {name}: no values")
    for v in values:
        try:
            parse(v)
        except ValueError:
            raise ConfigError(f"bad {flag} value {name}={v!r}") from None
    return Dim(name, values=values)


def parse_grid(items: list[str]) -> dict[str, Dim]:
    """`["lr=1e-4,3e-4", "freeze=none,image+text", "wd=0.01:0.1"]` -> the dimensions they describe.

    A value list is what a grid walks and what TPE / random search pick from; `LOW:HIGH` is a range (log-uniform
    for lr and weight_decay, integers for integer settings) that TPE and random search sample.
    """
    space: dict[str, Dim] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        name = _canonical(key)
        if not sep or not raw.strip():
            raise ConfigError(
                f"bad --grid {item!r}: expected NAME=V1,V2,... or NAME=LOW:HIGH, e.g. lr=1e-4,3e-4"
            )
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if any(":" in v for v in values):
            if len(values) != 1 or raw.count(":") != 1:
                raise ConfigError(f"bad --grid {item!r}: a range is one LOW:HIGH, not mixed with values")
            lo, hi = values[0].split(":")
            _numeric(name)
            try:
                space[name] = _range(name, float(lo), float(hi), None, None)
            except ValueError:
                raise ConfigError(f"bad --grid value {name}={values[0]!r}") from None
        else:
            space[name] = _values(name, values, "--grid")
    return space


def load_space(path: str | Path) -> dict[str, Dim]:
    """A search space from TOML: `NAME = [values]` or `NAME = {low, high, log, step}` per setting."""
    p = Path(path)
    doc = read_toml(p, "search space file")
    space: dict[str, Dim] = {}
    for key, spec in doc.items():
        name = _canonical(key)
        if isinstance(spec, list):
            space[name] = _values(name, [_text(v) for v in spec], f"{p.name}")
        elif isinstance(spec, dict):
            unknown = set(spec) - {"low", "high", "log", "step"}
            if unknown or "low" not in spec or "high" not in spec:
                raise ConfigError(
                    f"{p}: {key} must be a list of values or {{low, high[, log][, step]}}, got keys {sorted(spec)}"
                )
            try:
                space[name] = _range(
                    name, float(spec["low"]), float(spec["high"]), spec.get("log"), spec.get("step")
                )
            except (TypeError, ValueError):
                raise ConfigError(f"{p}: low/high/step of {key} must be numbers") from None
        else:
            raise ConfigError(f"{p}: {key} must be a list of values or a {{low, high}} table")
    return space


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def search_space(grid: list[str], space_file: str | Path | None = None) -> dict[str, Dim]:
    """The TOML file's dimensions, then the --grid flags (a flag replaces the file's entry of that name)."""
    space = load_space(space_file) if space_file else {}
    space.update(parse_grid(grid))
    if not space:
        raise ConfigError("nothing to sweep: pass --grid NAME=V1,V2 (or NAME=LOW:HIGH) or --space FILE")
    return space


def grid_size(space: dict[str, Dim]) -> int:
    """How many points the full grid has (ConfigError when a dimension is a range)."""
    ranged = [d.name for d in space.values() if d.is_range]
    if ranged:
        raise ConfigError(
            f"ranges ({', '.join(ranged)}) cannot be walked as a grid: list values, or use --sampler tpe|random"
        )
    return math.prod(len(d.values) for d in space.values())


def suggest(trial: Any, space: dict[str, Dim]) -> dict[str, Any]:
    """The trial's settings, asked of an Optuna trial (raw strings for value lists, numbers for ranges)."""
    out: dict[str, Any] = {}
    for name, d in space.items():
        if not d.is_range:
            out[name] = trial.suggest_categorical(name, d.values)
        elif d.integer:
            assert d.low is not None and d.high is not None
            step = int(d.step or 1)
            out[name] = trial.suggest_int(name, int(d.low), int(d.high), step=step, log=d.log)
        else:
            assert d.low is not None and d.high is not None
            out[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    return out


def trial_config(base: RunConfig, params: dict[str, Any]) -> RunConfig:
    """A copy of the base fine-tune config with the trial's settings applied (and validated)."""
    d = base.to_dict()
    for name, raw in params.items():
        section, fname, parse, kind = setting(name)
        value = parse(raw) if isinstance(raw, str) else raw
        d.setdefault(section, {})[fname] = int(value) if kind == "int" else value
    return RunConfig.from_dict(d)


def display(value: Any) -> str:
    """A setting's value as the table and the trial's folder name show it (floats to 3 significant digits)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_name(number: int, params: dict[str, Any]) -> str:
    """`03-lr0.000316-freezetext`: the trial number, then each setting's short name and value."""
    parts = [f"{name.split('.')[-1]}{_slug(display(v))}" for name, v in params.items()]
    return "-".join([f"{number:02d}", *parts])


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", value)


def default_mode(metric: str) -> str:
    """Better is lower for losses, higher for everything else."""
    return "min" if "loss" in metric else "max"


def metric_value(run: Path, metric: str, *, mode: str = "", best_of: str = "") -> float | None:
    """A trial's score: a flattened key of RUN/eval/final.json (or "headline"), or a validation metric
    (`val_...`) from RUN/metrics.jsonl — its best value when it is the early-stopping metric `best_of` (the
    weights the run kept), else its last one."""
    if metric.startswith("val_"):
        values = [
            float(e[metric])
            for e in _events(run / "metrics.jsonl")
            if e.get("kind") == "val" and isinstance(e.get(metric), int | float)
        ]
        if not values:
            return None
        if metric == best_of:
            return (min if (mode or default_mode(metric)) == "min" else max)(values)
        return values[-1]
    from mmpt.eval.report import flatten
    from mmpt.train.finetune import headline

    path = run / "eval" / "final.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    if metric == HEADLINE:
        return headline(report)[1]
    value = flatten(report).get(metric)
    return None if value is None else float(value)


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def format_results(results: dict[str, Any]) -> str:
    """A plain-text table of the trials in order, the best marked with "*"."""
    keys = list(dict.fromkeys(k for r in results["jobs"] for k in r["params"]))
    header = ["", "trial", *(k.split(".")[-1] for k in keys), results["metric"], "seconds", "status"]
    rows = []
    for r in results["jobs"]:
        value = "-" if r["metric"] is None else f"{r['metric']:.4f}"
        status = r["status"]
        if r.get("error"):
            status = f"failed: {r['error']}"
        elif status == "pruned" and r.get("pruned_step") is not None:
            status = f"pruned at step {r['pruned_step']}"
        rows.append(
            [
                "*" if r["name"] == results["best"] else "",
                r["name"],
                *(r["params"].get(k, "") for k in keys),
                value,
                "-" if r["seconds"] is None else f"{r['seconds']:.0f}",
                status,
            ]
        )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    best = (
        f"best: {results['best']} ({results['mode']} {results['metric']})"
        if results["best"]
        else "no trial finished"
    )
    return "\n".join([*lines, best])
