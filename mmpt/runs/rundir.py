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

from mmpt.checksums import (
    MODEL_FILES,
    CorruptCheckpoint,
    fsync_path,
    say_once,
    verify_files,
    write_manifest,
)
from mmpt.errors import ConfigError
from mmpt.runs.proc import hostname, pid_alive, process_start

STATES = ("running", "stopped", "finished", "failed")
RESUME_FILES = ("model.safetensors", "model.json", "optim.pt", "state.json")  # what a resume reads


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
    def create(cls, path: str | Path, config: Mapping[str, Any], *, restart: bool = False) -> RunDir:
        """Start a new run folder; one that already holds a run is refused (use --resume for that), or, with
        `restart`, cleared first (clear_for_restart) unless a live process other than this one trains in it."""
        run = cls(path)
        if run.config_path.exists() or (restart and run.path.exists()):
            if not restart:
                raise ConfigError(
                    f"{run.path} already holds a run; pass --resume {run.path} to continue it, "
                    "or --restart to start it over (discarding its checkpoints and metrics)"
                )
            live = run.live_pid()
            if live is not None:
                raise ConfigError(f"{run.path} is being trained by process {live}; stop it before restarting")
            run.clear_for_restart()
        run.path.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        run.eval_dir.mkdir(exist_ok=True)
        run.write_config(config)
        run.metrics_path.touch()
        return run

    def live_pid(self) -> int | None:
        """The pid of another live process recorded as this run's job or trainer (on this host), if any."""
        status = self.status()
        recorded = [self.job(), status if status.get("state") == "running" else {}]
        for info in recorded:
            pid = info.get("pid")
            if (
                pid
                and pid not in (os.getpid(), os.getppid())  # this process, or the launcher (torchrun)
                and info.get("host") == hostname()
                and pid_alive(pid, info.get("pid_start"))
            ):
                return int(pid)
        return None

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
        optim.pt, `state` to state.json. Every file is fsynced and hashed into checksums.json before the
        rename (mmpt.checksums); loading checks them. Test hook: with MMPT_TEST_CHECKPOINT_PAUSE=S in
        the environment the write sleeps S seconds after each file, so a kill from outside can land inside it.
        """
        import torch

        final = self.checkpoints / f"step-{step:07d}"
        tmp = self.checkpoints / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_weights(tmp)
        _test_pause()
        torch.save(extra, tmp / "optim.pt")
        _test_pause()
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
        _test_pause()
        write_manifest(tmp)
        _test_pause()
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        fsync_path(self.checkpoints)
        _test_pause()
        self.point_latest(final.name)
        self._prune(keep, protect=final)
        return final

    def point_latest(self, name: str) -> None:
        """Make checkpoints/latest name `name` (temp file + rename)."""
        latest_tmp = self.checkpoints / ".latest.tmp"
        latest_tmp.write_text(name)
        latest_tmp.replace(self.checkpoints / "latest")

    def latest_checkpoint(
        self, *, verify: bool = True, need: tuple[str, ...] | None = MODEL_FILES
    ) -> Path | None:
        """The newest intact checkpoint, or None: the one `latest` names, else the newest before it.

        `verify` checks the files `need` (default the model's; RESUME_FILES for a resume, None for all) against
        the checkpoint's checksums; a corrupt one is skipped with a warning naming it and why. verify=False
        only looks at which folders are complete (cheap: listings, history).
        """
        ckpt, _ = self.find_checkpoint(verify=verify, need=need)
        return ckpt

    def find_checkpoint(
        self, *, verify: bool = True, need: tuple[str, ...] | None = MODEL_FILES
    ) -> tuple[Path | None, list[str]]:
        """(newest intact checkpoint or None, one line per checkpoint skipped as corrupt)."""
        skipped: list[str] = []
        for ckpt in self._candidates():
            if not verify:
                return ckpt, skipped
            try:
                verify_files(ckpt, need)
            except CorruptCheckpoint as exc:
                reason = f"{ckpt.name}: {exc.path.name} {exc.reason}"
                skipped.append(reason)
                say_once(f"skip:{ckpt.resolve()}:{reason}", f"skipping checkpoint {ckpt} ({exc})")
                continue
            if skipped:
                say_once(
                    f"use:{ckpt.resolve()}:{len(skipped)}",
                    f"using checkpoint {ckpt} of {self.path}, the newest intact one",
                )
            return ckpt, skipped
        return None, skipped

    def require_checkpoint(self, need: tuple[str, ...] | None = MODEL_FILES) -> Path:
        """The newest intact checkpoint (as latest_checkpoint), or a one-line ConfigError: "none yet", or the
        checkpoints skipped as corrupt and why."""
        ckpt, skipped = self.find_checkpoint(need=need)
        if ckpt is not None:
            return ckpt
        if skipped:
            raise ConfigError(f"{self.path} has no intact checkpoint ({'; '.join(skipped)})")
        raise ConfigError(f"{self.path} has no checkpoint yet")

    def _candidates(self) -> list[Path]:
        """Complete checkpoints to try: the one `latest` names first, then the others newest first."""
        steps = self.checkpoint_list()[::-1]
        pointer = self.checkpoints / "latest"
        if pointer.is_file():
            target = self.checkpoints / pointer.read_text().strip()
            if target in steps:
                steps.remove(target)
                steps.insert(0, target)
        return steps

    def checkpoint_list(self) -> list[Path]:
        """Checkpoint folders, oldest first: every step-NNNNNNN/ (one only gets that name once complete, so a
        file missing from it is damage, found by verifying it, not a write in progress)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.glob("step-*") if p.is_dir())

    def _prune(self, keep: int, protect: Path) -> None:
        """Remove checkpoints past the `keep` newest (never `protect` nor the one marked best) and the temp
        folders of writes a kill interrupted (this run's only writer is the caller)."""
        marked_best = self.checkpoints / "best"
        best = self.checkpoints / marked_best.read_text().strip() if marked_best.is_file() else None
        for old in self.checkpoint_list()[:-keep] if keep > 0 else []:
            if old not in (protect, best):
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.checkpoints.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)

    # --- starting over -------------------------------------------------------------------------------
    def clear_for_restart(self) -> None:
        """Remove what a training run wrote (config, metrics, status, checkpoints, reports, fine-tune files)
        so the folder can hold a new run; a job's own job.json and logs/ stay. Idempotent: a kill half-way
        leaves a folder this clears again."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)
        for pattern in RUN_GLOBS:
            for p in self.path.glob(pattern):
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


RUN_FILES = ("config.toml", "config.toml.tmp", "metrics.jsonl", ".metrics.jsonl.tmp", "status.json",
             ".status.json.tmp", "finetune.json", "head.safetensors", "head.json", "checksums.json")  # fmt: skip
RUN_FOLDERS = ("checkpoints", "eval", "init")
RUN_GLOBS = ("wise-*",)


def _test_pause() -> None:
    """MMPT_TEST_CHECKPOINT_PAUSE=S: sleep S seconds (the fault tests kill a pretrain inside a checkpoint)."""
    pause = os.environ.get("MMPT_TEST_CHECKPOINT_PAUSE")
    if pause:
        time.sleep(float(pause))


def read_checkpoint_state(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state.json, optim.pt contents) of a checkpoint, checked against its checksums; optim.pt is read with
    weights_only=True. A file that does not read raises CorruptCheckpoint."""
    import pickle

    import torch

    verify_files(ckpt, ("state.json", "optim.pt"))
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CorruptCheckpoint(ckpt / "state.json", f"does not read ({exc})") from None
    try:
        extra = torch.load(ckpt / "optim.pt", map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptCheckpoint(ckpt / "optim.pt", f"does not read ({first})") from None
    return state, extra
