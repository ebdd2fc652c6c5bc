"""One small adapter per experiment tracker over a common interface: log(step, metrics), log_params, summary,
close. mmpt.train.reporting decides what goes to them and when; here each library is only called.

Every adapter works offline: TensorBoard event files in RUN/tensorboard/, W&B with WANDB_MODE=offline
(RUN/wandb/offline-run-*), MLflow in a SQLite store RUN/mlflow.db unless MLFLOW_TRACKING_URI names another,
trackio in its local store. Each library is imported only when its tracker starts; a missing one raises
ImportError, which the caller turns into one warning line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = "mmpt"  # default W&B project / MLflow experiment / trackio project (env variables override)
EXTRA = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


class Tracker(ABC):
    """What the reporting session needs of a tracker; `ident` is what a resumed run reopens it with."""

    name = ""
    ident: str | None = None

    @abstractmethod
    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record the values of one metrics event at a training step."""

    @abstractmethod
    def log_params(self, params: dict[str, Any]) -> None:
        """Record settings (flat dotted keys): the run config, the model size."""

    @abstractmethod
    def summary(self, values: dict[str, float], step: int) -> None:
        """Record the final figures (the eval report) as the run's summary."""

    @abstractmethod
    def close(self, state: str) -> None:
        """End the tracker's run; `state` is finished, stopped or failed."""


def start_tracker(name: str, run: Path, config: dict[str, Any], ident: str | None) -> Tracker:
    """Start tracker `name` for the run folder `run` (reopening run `ident` when a resumed run has one)."""
    classes: dict[str, Callable[[Path, dict[str, Any], str | None], Tracker]] = {
        "tensorboard": TensorBoardTracker,
        "wandb": WandbTracker,
        "mlflow": MlflowTracker,
        "trackio": TrackioTracker,
    }
    return classes[name](run, config, ident)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-4}} -> {"train.lr": 1e-4}; lists and empty tables become their JSON text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (list, tuple, dict)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


# ---- TensorBoard --------------------------------------------------------------------------------------------


class TensorBoardTracker(Tracker):
    """Event files in RUN/tensorboard/ (`tensorboard --logdir RUNS_FOLDER` shows every run by its folder).

    The writer opens at the first logged step, purging from there what an earlier (killed) session of the run
    wrote at that step or later, so a resumed run reads as one curve.
    """

    name = "tensorboard"

    def __init__(self, run: Path, config: dict[str, Any], ident: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # ImportError without the tensorboard package

        self._make = lambda purge: SummaryWriter(log_dir=str(run / "tensorboard"), purge_step=purge)
        self.writer: Any = None
        self.ident = "tensorboard"
        self._texts: dict[str, dict[str, Any]] = {"config": config}

    def _open(self, step: int | None) -> Any:
        if self.writer is None:
            self.writer = self._make(step)
            for tag, values in self._texts.items():
                lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in flat_params(values).items())
                self.writer.add_text(tag, f"```\n{lines}\n```")
        return self.writer

    def log(self, step: int, metrics: dict[str, float]) -> None:
        writer = self._open(step)
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)
        writer.flush()

    def log_params(self, params: dict[str, Any]) -> None:
        if self.writer is None:
            self._texts["params"] = {**self._texts.get("params", {}), **params}
            return
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
        self.writer.add_text("params", f"```\n{lines}\n```")

    def summary(self, values: dict[str, float], step: int) -> None:
        self.log(step, values)

    def close(self, state: str) -> None:
        self._open(None).close()


# ---- Weights & Biases ----------------------------------------------------------------------------------------


class WandbTracker(Tracker):
    """A W&B run named after the run folder, its files under RUN/wandb/ (offline with WANDB_MODE=offline)."""

    name = "wandb"

    def __init__(self, run: Path, config: dict[str, Any], ident: str | None) -> None:
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or PROJECT,
            name=run.name,
            dir=str(run),
            config=config,
            id=ident,
            resume="allow" if ident else None,
            reinit="create_new",  # several runs in one process (a sweep's trials, a notebook)
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.ident = self.run.id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def summary(self, values: dict[str, float], step: int) -> None:
        self.run.summary.update(values)

    def close(self, state: str) -> None:
        self.run.finish(exit_code=1 if state == "failed" else 0)


# ---- MLflow ----------------------------------------------------------------------------------------------------

_MLFLOW_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_MLFLOW_STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}


def mlflow_key(key: str) -> str:
    """MLflow names allow letters, digits, _ - . space and /: "retrieval.a_to_b.r@1" -> "...r_1"."""
    return _MLFLOW_KEY.sub("_", key)[:250]


class MlflowTracker(Tracker):
    """An MLflow run (experiment MLFLOW_EXPERIMENT_NAME or "mmpt") in MLFLOW_TRACKING_URI, else RUN/mlflow.db."""

    name = "mlflow"

    def __init__(self, run: Path, config: dict[str, Any], ident: str | None) -> None:
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." on every new store
            logging.getLogger(noisy).setLevel(logging.WARNING)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run / 'mlflow.db').absolute()}"
        self.client = MlflowClient(tracking_uri=uri)
        if ident:
            self.client.update_run(ident, status="RUNNING")
            self.ident = ident
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or PROJECT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(
                name, artifact_location=(run / "mlartifacts").absolute().as_uri()
            )
        )
        created = self.client.create_run(
            experiment_id, run_name=run.name, tags={"mmpt.run": str(run.absolute())}
        )
        self.ident = created.info.run_id
        self.log_params(flat_params(config))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # the store's batch limit
            self.client.log_batch(self.ident or "", metrics=batch[i : i + 1000])

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(mlflow_key(k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # the store's batch limit for params
            self.client.log_batch(self.ident or "", params=batch[i : i + 100])

    def summary(self, values: dict[str, float], step: int) -> None:
        self.log(step, values)

    def close(self, state: str) -> None:
        self.client.set_terminated(self.ident or "", status=_MLFLOW_STATUS.get(state, "FINISHED"))


# ---- trackio ---------------------------------------------------------------------------------------------------


class TrackioTracker(Tracker):
    """A trackio run (project TRACKIO_PROJECT or "mmpt") in trackio's local store."""

    name = "trackio"

    def __init__(self, run: Path, config: dict[str, Any], ident: str | None) -> None:
        import importlib

        trackio = importlib.import_module("trackio")  # untyped: imported by name
        # the Run object, not trackio's module-level current run: a sweep's trials each hold their own
        self.run = trackio.init(
            project=os.environ.get("TRACKIO_PROJECT") or PROJECT,
            name=ident or run.name,
            config=config,
            resume="allow" if ident else "never",
        )
        self.ident = ident or str(self.run.name)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params)  # sent with the first logged values (the start event comes first)

    def summary(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self, state: str) -> None:
        self.run.finish()
