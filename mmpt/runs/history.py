"""The run history: one row per run directory under a folder, for comparing runs and picking one up again."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from mmpt.errors import ConfigError
from mmpt.runs.rundir import RunDir, read_json
from mmpt.runs.status import run_status

COLUMNS = [
    "name",
    "path",
    "kind",
    "status",
    "model",
    "dataset",
    "step",
    "total_steps",
    "metric",
    "best_metric",
    "started",
    "duration_s",
]


def list_runs(root: str | Path) -> Any:
    """A pandas DataFrame of the runs directly under `root` (COLUMNS), newest first; other folders are skipped.

    `metric`/`best_metric` are the early-stopping metric and its best value when the run had one, else the
    final report's mean zero-shot accuracy (`zero_shot_acc`) when it was evaluated.
    """
    import pandas as pd

    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"no such folder: {base}")
    rows = [run_summary(p) for p in sorted(base.iterdir()) if p.is_dir() and (p / "config.toml").is_file()]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values("started", ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


def run_summary(path: str | Path) -> dict[str, Any]:
    """One row of `list_runs` for a run directory."""
    rd = RunDir(path)
    try:
        cfg = rd.config_dict()
    except ConfigError:
        cfg = {}
    status = run_status(rd)
    started = _started(rd)
    end: float | None = time.time()
    if status["state"] != "running":
        end = status.get("time") or (rd.status_path.stat().st_mtime if rd.status_path.exists() else None)
    metric, best = _best(rd, cfg)
    finetune = cfg.get("finetune")
    kind = (
        ("classify" if finetune.get("task") == "classify" else "finetune")
        if finetune is not None
        else "pretrain"
    )
    return {
        "name": rd.path.name,
        "path": str(rd.path),
        "kind": kind,
        "status": status["state"],
        "model": cfg.get("model", {}).get("name"),
        "dataset": cfg.get("data", {}).get("dataset"),
        "step": status.get("step"),
        "total_steps": status.get("total_steps"),
        "metric": metric,
        "best_metric": best,
        "started": datetime.fromtimestamp(started) if started else None,
        "duration_s": round(end - started, 1) if started and end else None,
    }


def _started(rd: RunDir) -> float | None:
    """When the run first started: the time of metrics.jsonl's first event, else config.toml's mtime."""
    try:
        with rd.metrics_path.open("rb") as f:
            first = json.loads(f.readline() or b"{}")
        if isinstance(first, dict) and first.get("time"):
            return float(first["time"])
    except (OSError, ValueError):
        pass
    return rd.config_path.stat().st_mtime if rd.config_path.exists() else None


def _best(rd: RunDir, cfg: dict[str, Any]) -> tuple[str | None, float | None]:
    """(metric name, best value) from the newest checkpoint's state, else the final eval report."""
    name = cfg.get("train", {}).get("early_stop_metric")
    ckpt = rd.latest_checkpoint(verify=False) if rd.checkpoints.is_dir() else None  # a listing: no hashing
    if name and ckpt is not None:
        best = read_json(ckpt / "state.json").get("best_metric")
        if best is not None:
            return name, float(best)
    final = read_json(rd.eval_dir / "final.json")
    accs = [
        v["accuracy"] for v in final.get("zero_shot", {}).values() if isinstance(v, dict) and "accuracy" in v
    ]
    if accs:
        return "zero_shot_acc", sum(accs) / len(accs)
    return None, None
