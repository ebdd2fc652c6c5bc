"""The run directory (DESIGN.md): config, metrics.jsonl, atomic step checkpoints, eval reports, status."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import torch

from mmpt.errors import ConfigError
from mmpt.train.config import RunConfig, load_config, save_config

STATES = ("running", "stopped", "finished", "failed")


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


class RunDir:
    """One training job's folder; the only thing the CLI, notebook, desktop app and Python API share."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.metrics_path = self.path / "metrics.jsonl"
        self.status_path = self.path / "status.json"
        self.checkpoints = self.path / "checkpoints"
        self.eval_dir = self.path / "eval"

    # --- creation and config -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig) -> RunDir:
        """Start a new run folder; refuses one that already holds a run (use --resume for that)."""
        run = cls(path)
        if run.config_path.exists():
            raise ConfigError(f"{run.path} already holds a run; pass --resume {run.path} to continue it")
        run.path.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        run.eval_dir.mkdir(exist_ok=True)
        save_config(cfg, run.config_path)
        run.metrics_path.touch()
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run folder (error if there is none)."""
        run = cls(path)
        if not run.config_path.is_file():
            raise ConfigError(f"{run.path} is not an mmpt run directory (no config.toml)")
        return run

    def config(self) -> RunConfig:
        return load_config(self.config_path)

    def save_config(self, cfg: RunConfig) -> None:
        save_config(cfg, self.config_path)

    # --- metrics -------------------------------------------------------------------------------------
    def log(self, event: dict[str, Any]) -> None:
        """Append one event line and flush it, so followers see it at once."""
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(event) + "\n")
            f.flush()

    def metrics(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All events (or those of one kind) logged so far."""
        if not self.metrics_path.exists():
            return []
        events = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
        return [e for e in events if kind is None or e.get("kind") == kind]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop events past a step: a resumed run re-logs them, so the log reads as one uninterrupted run."""
        lines = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a hard kill
                continue
            if event.get("step", 0) <= after_step:
                lines.append(line)
        tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(self.metrics_path)

    # --- status --------------------------------------------------------------------------------------
    def write_status(self, state: str, **fields: Any) -> None:
        assert state in STATES, state
        status = {"state": state, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **fields}
        _write_json_atomic(self.status_path, status)

    def status(self) -> dict[str, Any]:
        return json.loads(self.status_path.read_text()) if self.status_path.exists() else {}

    # --- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, step: int, model: torch.nn.Module, extra: dict[str, Any], state: dict[str, Any],
                        keep: int = 3) -> Path:
        """Write step-NNNNNNN/ under a temp name and rename it, so a crash never leaves half a checkpoint."""
        from mmpt.models.checkpoint import save_model

        final = self.checkpoints / f"step-{step:07d}"
        tmp = self.checkpoints / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, tmp)
        torch.save(extra, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        latest_tmp = self.checkpoints / ".latest.tmp"
        latest_tmp.write_text(final.name)
        latest_tmp.replace(self.checkpoints / "latest")
        self._prune(keep, protect=final)
        return final

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        pointer = self.checkpoints / "latest"
        if pointer.is_file():
            target = self.checkpoints / pointer.read_text().strip()
            if (target / "state.json").is_file():
                return target
        steps = sorted(p for p in self.checkpoints.glob("step-*") if (p / "state.json").is_file())
        return steps[-1] if steps else None

    def checkpoint_list(self) -> list[Path]:
        return sorted(p for p in self.checkpoints.glob("step-*") if (p / "state.json").is_file())

    def _prune(self, keep: int, protect: Path) -> None:
        marked_best = self.checkpoints / "best"
        best = self.checkpoints / marked_best.read_text().strip() if marked_best.is_file() else None
        for old in self.checkpoint_list()[:-keep] if keep > 0 else []:
            if old not in (protect, best):
                shutil.rmtree(old, ignore_errors=True)


def read_checkpoint_state(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state.json, optim.pt contents) of a checkpoint; optim.pt is read with weights_only=True."""
    state = json.loads((ckpt / "state.json").read_text())
    extra = torch.load(ckpt / "optim.pt", map_location="cpu", weights_only=True)
    return state, extra
