"""The run directory (DESIGN.md): config, metrics.jsonl, atomic step checkpoints, eval reports, status.

The config is handled here as the TOML file / a plain dict; mmpt.train turns it into its typed RunConfig.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from mmpt.errors import ConfigError
from mmpt.runs.proc import hostname, process_start

STATES = ("running", "stopped", "finished", "failed")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp name and rename it, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing (or, mid-replace on some filesystems, unreadable)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


class RunDir:
    """One training job's folder; the only thing the CLI, notebook, desktop app and Python API share."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.metrics_path = self.path / "metrics.jsonl"
        self.status_path = self.path / "status.json"
        self.checkpoints = self.path / "checkpoints"
        self.eval_dir = self.path / "eval"
        self.job_path = self.path / "job.json"  # written by mmpt.jobs: pid, pgid, argv, kind, started
        self.logs = self.path / "logs"  # a job's stdout and stderr

    # --- creation and config -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: Mapping[str, Any]) -> RunDir:
        """Start a new run folder; refuses one that already holds a run (use --resume for that)."""
        run = cls(path)
        if run.config_path.exists():
            raise ConfigError(f"{run.path} already holds a run; pass --resume {run.path} to continue it")
        run.path.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        run.eval_dir.mkdir(exist_ok=True)
        run.write_config(config)
        run.metrics_path.touch()
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run folder (error if there is none)."""
        run = cls(path)
        if not run.config_path.is_file():
            raise ConfigError(f"{run.path} is not an mmpt run directory (no config.toml)")
        return run

    def config_dict(self) -> dict[str, Any]:
        """config.toml as a plain dict (mmpt.train.config.load_config gives the typed RunConfig)."""
        if not self.config_path.is_file():
            raise ConfigError(f"config file not found: {self.config_path}")
        try:
            return tomllib.loads(self.config_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.config_path} is not valid TOML: {exc}") from None

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the resolved config (a plain dict, e.g. RunConfig.to_dict()) as TOML, temp file + rename."""
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(dict(config)))
        tmp.replace(self.config_path)

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
        """Record the job's state with what identifies its process (host, pid and the pid's start time)."""
        assert state in STATES, state
        pid = os.getpid()
        status = {
            "state": state,
            "pid": pid,
            "pid_start": process_start(pid),
            "host": hostname(),
            "time": time.time(),
            **fields,
        }
        write_json_atomic(self.status_path, status)

    def status(self) -> dict[str, Any]:
        """status.json as written ({} before the job first wrote it); mmpt.runs.run_status interprets it."""
        return read_json(self.status_path)

    def job(self) -> dict[str, Any]:
        """job.json as mmpt.jobs wrote it ({} for a run started otherwise)."""
        return read_json(self.job_path)

    def write_job(self, info: Mapping[str, Any]) -> None:
        write_json_atomic(self.job_path, dict(info))

    # --- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(
        self,
        step: int,
        write_weights: Callable[[Path], object],
        extra: dict[str, Any],
        state: dict[str, Any],
        keep: int = 3,
    ) -> Path:
        """Write step-NNNNNNN/ under a temp name and rename it, so a crash never leaves half a checkpoint.

        `write_weights(folder)` writes the model files (mmpt.models.checkpoint.save_model); `extra` goes to
        optim.pt, `state` to state.json.
        """
        import torch

        final = self.checkpoints / f"step-{step:07d}"
        tmp = self.checkpoints / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_weights(tmp)
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
        """Complete checkpoints, oldest first."""
        return sorted(p for p in self.checkpoints.glob("step-*") if (p / "state.json").is_file())

    def _prune(self, keep: int, protect: Path) -> None:
        marked_best = self.checkpoints / "best"
        best = self.checkpoints / marked_best.read_text().strip() if marked_best.is_file() else None
        for old in self.checkpoint_list()[:-keep] if keep > 0 else []:
            if old not in (protect, best):
                shutil.rmtree(old, ignore_errors=True)


def read_checkpoint_state(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state.json, optim.pt contents) of a checkpoint; optim.pt is read with weights_only=True."""
    import torch

    state = json.loads((ckpt / "state.json").read_text())
    extra = torch.load(ckpt / "optim.pt", map_location="cpu", weights_only=True)
    return state, extra
