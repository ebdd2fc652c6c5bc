"""Hyperparameter sweeps over fine-tuning: a grid or a random sample of lr, weight decay, freeze policy, ...

Each job is a real fine-tune into SWEEP_DIR/<job>/ (in this process, one after another, or each as its own
`python -m mmpt finetune` process); SWEEP_DIR/results.json and a printed table rank them by one metric of
their final eval report, the best one marked.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomli_w

from mmpt.errors import ConfigError, MmptError
from mmpt.train.config import RunConfig

# sweepable setting -> (section, field, parser)
PARAMS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "lr": ("train", "lr", float),
    "weight_decay": ("train", "weight_decay", float),
    "epochs": ("train", "epochs", int),
    "batch_size": ("train", "batch_size", int),
    "layer_decay": ("finetune", "layer_decay", float),
    "freeze": ("finetune", "freeze", lambda v: [t for t in v.split("+") if t] or ["none"]),
}
ALIASES = {"wd": "weight_decay"}
LOG_UNIFORM = ("lr", "weight_decay")
HEADLINE = "headline"


@dataclass
class SweepJob:
    """One point of the sweep: its folder name and the settings it changes."""

    name: str
    params: dict[str, str]


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`["lr=1e-4,3e-4", "freeze=none,text"]` -> {"lr": ["1e-4", "3e-4"], "freeze": ["none", "text"]}.

    Values are raw strings (a freeze value joins towers with "+", e.g. image+text); `a:b` is a range that
    only random search can sample (log-uniform for lr and weight_decay, uniform otherwise).
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not values.strip():
            raise ConfigError(f"bad --grid {item!r}: expected NAME=V1,V2,... e.g. lr=1e-4,3e-4")
        if key not in PARAMS:
            raise ConfigError(f"cannot sweep {key!r}: choose from {', '.join(PARAMS)}")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        for v in vals:
            for part in v.split(":") if ":" in v else [v]:
                try:
                    PARAMS[key][2](part)
                except ValueError:
                    raise ConfigError(f"bad --grid value {key}={v!r}") from None
        grid[key] = vals
    if not grid:
        raise ConfigError("nothing to sweep: pass at least one --grid NAME=V1,V2")
    return grid


def plan_jobs(grid: dict[str, list[str]], random_n: int = 0, seed: int = 0) -> list[SweepJob]:
    """Every combination of the grid, or `random_n` random points (ranges sampled, lists picked from)."""
    keys = list(grid)
    if random_n:
        rng = random.Random(seed)
        points = [{k: _sample(k, rng.choice(grid[k]), rng) for k in keys} for _ in range(random_n)]
    else:
        ranged = [k for k in keys if any(":" in v for v in grid[k])]
        if ranged:
            raise ConfigError(
                f"ranges ({', '.join(ranged)}) need --random N: a grid takes listed values only"
            )
        points = [
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))
        ]
    return [
        SweepJob(f"{i:02d}-" + "-".join(f"{k}{_slug(v)}" for k, v in p.items()), p)
        for i, p in enumerate(points)
    ]


def _sample(key: str, value: str, rng: random.Random) -> str:
    if ":" not in value:
        return value
    lo, hi = (float(x) for x in value.split(":", 1))
    if key in LOG_UNIFORM and lo > 0:
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        x = rng.uniform(lo, hi)
    return str(int(round(x))) if PARAMS[key][2] is int else f"{x:.3g}"


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", value)


def job_config(base: RunConfig, job: SweepJob) -> RunConfig:
    """A copy of the base fine-tune config with the job's settings applied."""
    cfg = RunConfig.from_dict(base.to_dict())
    for key, raw in job.params.items():
        section, name, parse = PARAMS[key]
        setattr(getattr(cfg, section), name, parse(raw))
    return cfg


def metric_value(run: Path, metric: str) -> float | None:
    """The sweep metric of a finished job: a flattened key of RUN/eval/final.json, or the headline figure."""
    from mmpt.eval.report import flatten
    from mmpt.train.finetune import headline

    path = run / "eval" / "final.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    if metric == HEADLINE:
        return headline(report)[1]
    return flatten(report).get(metric)


def run_sweep(
    base: RunConfig,
    out: str | Path,
    jobs: list[SweepJob],
    *,
    metric: str = HEADLINE,
    mode: str = "",
    pairs_given: bool = False,
    processes: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the jobs one after another into OUT/<job>/, then rank them; returns (and writes) results.json."""
    from mmpt.train.finetune import finetune

    out = Path(out)
    if (out / "results.json").exists():
        raise ConfigError(f"{out} already holds a sweep (results.json); choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    mode = mode or ("min" if "loss" in metric else "max")
    rows = []
    for k, job in enumerate(jobs, 1):
        echo(f"[{k}/{len(jobs)}] {job.name}: {', '.join(f'{a}={b}' for a, b in job.params.items())}")
        cfg, run = job_config(base, job), out / job.name
        t0, status, error = time.perf_counter(), "ok", None
        try:
            if processes:
                _run_process(cfg, run, pairs_given)
            else:
                finetune(cfg, run, pairs_given=pairs_given, progress=progress)
        except MmptError as exc:
            status, error = "failed", str(exc).splitlines()[0]
            echo(f"  failed: {error}")
        rows.append(
            {
                **asdict(job),
                "run": str(run),
                "status": status,
                "error": error,
                "metric": metric_value(run, metric) if status == "ok" else None,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    scored = [r for r in rows if r["metric"] is not None]
    best = (max if mode == "max" else min)(scored, key=lambda r: r["metric"])["name"] if scored else None
    results = {"metric": metric, "mode": mode, "best": best, "jobs": rows}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def _run_process(cfg: RunConfig, run: Path, pairs_given: bool) -> None:
    """One job as an independent `python -m mmpt finetune` process reading the job's full config."""
    run.parent.mkdir(parents=True, exist_ok=True)
    config = run.parent / f"{run.name}.toml"
    config.write_text(tomli_w.dumps(cfg.to_dict()))
    cmd = [sys.executable, "-m", "mmpt", "finetune", "--config", str(config), "--run", str(run), "--quiet"]
    if pairs_given:
        cmd += ["--pairs", ",".join(cfg.train.pairs)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise MmptError(lines[-1] if lines else f"exit status {proc.returncode}")


def format_results(results: dict[str, Any]) -> str:
    """A plain-text table of the jobs in run order, the best marked with "*"."""
    keys = list(dict.fromkeys(k for r in results["jobs"] for k in r["params"]))
    header = ["", "job", *keys, results["metric"], "seconds", "status"]
    rows = []
    for r in results["jobs"]:
        value = "-" if r["metric"] is None else f"{r['metric']:.4f}"
        rows.append(
            [
                "*" if r["name"] == results["best"] else "",
                r["name"],
                *(r["params"].get(k, "") for k in keys),
                value,
                f"{r['seconds']:.0f}",
                r["status"] if not r["error"] else f"failed: {r['error']}",
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
        else "no job finished"
    )
    return "\n".join([*lines, best])
