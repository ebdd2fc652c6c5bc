"""`mmpt sweep` on an Optuna study: a sampler proposes each trial's settings (TPE by default; grid and random
too), the trial is a real fine-tune (in this process, or as its own `python -m mmpt finetune` process, several
at once), and its validation metric is followed from RUN/metrics.jsonl so that the pruner (median or
Hyperband) can stop a bad trial early.

The study lives in SWEEP/study.db (SQLite, what `optuna-dashboard sqlite:///SWEEP/study.db` reads): rerunning
the same command resumes it, a larger --trials extends it, and finished trials are never redone. A trial cut
off by a stop or a kill is recorded as failed and run again with the same settings. One driver at a time owns
a sweep folder (SWEEP/.sweep.lock); SWEEP/results.json and the printed table rank the trials, the best marked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmpt.errors import ConfigError
from mmpt.runs import RunDir
from mmpt.train.config import RunConfig
from mmpt.train.sweep import (
    HEADLINE,
    Dim,
    default_mode,
    display,
    grid_size,
    metric_value,
    suggest,
    trial_config,
    trial_name,
)
from mmpt.train.sweep_trial import Active, Follower, Outcome, stop_orphan

STUDY = "mmpt-sweep"
POLL_S = 0.3
SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("median", "hyperband", "none")


@dataclass
class SweepOptions:
    """How to search (plain data): the score, the sampler, the pruner, how many trials and how to run them."""

    metric: str = HEADLINE  # key of RUN/eval/final.json, "headline", or a validation metric (val_...)
    mode: str = ""  # max or min; "" = min for losses, else max
    sampler: str = ""  # tpe, grid or random; "": grid for value lists without a trials count, else tpe
    trials: int = 0  # finished trials the study should hold (grid: 0 = every point)
    pruner: str = "median"  # median, hyperband or none
    prune_metric: str = ""  # validation metric the pruner follows; "" = the early-stopping one, else val_loss
    prune_startup: int = 5  # trials finished before the median pruner starts pruning
    prune_warmup: int = 0  # validations every trial gets before it may be pruned
    parallel: int = 1  # trials running at once (more than 1: each as its own process)
    processes: bool = False  # run each trial as its own `python -m mmpt finetune` process
    seed: int = 0


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("mmpt sweep needs Optuna: pip install 'mmpt[sweep]'") from None
    return optuna


# ---- the study ------------------------------------------------------------------------------------------------


def resolve_options(opts: SweepOptions, space: dict[str, Dim], base: RunConfig) -> SweepOptions:
    """Fill the defaults that depend on the space and the base config; check the choices."""
    o = SweepOptions(**asdict(opts))
    o.mode = o.mode or default_mode(o.metric)
    if o.mode not in ("max", "min"):
        raise ConfigError(f"--mode must be max or min, got {o.mode!r}")
    only_lists = not any(d.is_range for d in space.values())
    o.sampler = o.sampler or ("grid" if only_lists and not o.trials else "tpe")
    if o.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {o.sampler!r}")
    if o.pruner not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {o.pruner!r}")
    if o.sampler == "grid":
        o.trials = o.trials or grid_size(space)
    elif o.trials <= 0:
        raise ConfigError(f"how many trials? pass --trials N for the {o.sampler} sampler")
    o.prune_metric = o.prune_metric or base.train.early_stop_metric or "val_loss"
    if o.parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {o.parallel}")
    o.processes = o.processes or o.parallel > 1
    return o


def _spec(base: RunConfig, space: dict[str, Dim], o: SweepOptions, pairs_given: bool) -> dict[str, Any]:
    """What makes a sweep the same sweep on a rerun (SWEEP/sweep.json); trials/parallel/processes may change."""
    keep = {k: v for k, v in asdict(o).items() if k not in ("trials", "parallel", "processes")}
    return {
        **keep,
        "space": {k: d.to_dict() for k, d in space.items()},
        "base": base.to_dict(),
        "pairs_given": pairs_given,
    }


def _check_spec(out: Path, spec: dict[str, Any]) -> None:
    path = out / "sweep.json"
    if path.is_file():
        old = json.loads(path.read_text())
        differ = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        if differ:
            raise ConfigError(
                f"{out} holds a sweep with other settings ({', '.join(differ)}); rerun it with the same "
                "flags to resume or extend it, or choose a new --out"
            )
        return
    tmp = out / ".sweep.json.tmp"
    tmp.write_text(json.dumps(spec, indent=1) + "\n")
    tmp.replace(path)


def open_study(out: Path, space: dict[str, Dim], o: SweepOptions) -> Any:
    """Create or load the study in OUT/study.db with the sampler, the pruner and the direction of `o`."""
    optuna = _optuna()
    storage = f"sqlite:///{(out / 'study.db').absolute()}"
    if o.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=o.prune_startup, n_warmup_steps=o.prune_warmup)
    elif o.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=max(1, o.prune_warmup))
    else:
        pruner = optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY,
        direction="maximize" if o.mode == "max" else "minimize",
        pruner=pruner,
        load_if_exists=True,
    )
    # a resumed study must not replay the proposals of the first run: the seed moves on with the trials held
    seed = o.seed + len(study.get_trials(deepcopy=False))
    if o.sampler == "grid":
        study.sampler = _grid_sampler(optuna)({k: d.values for k, d in space.items()}, seed=o.seed)
    elif o.sampler == "random":
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        study.sampler = optuna.samplers.TPESampler(seed=seed)
    if "metric" not in study.user_attrs:
        study.set_user_attr("metric", o.metric)
        study.set_user_attr("prune_metric", o.prune_metric)
    return study


def _grid_sampler(optuna: Any) -> Any:
    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid, minus its `study.stop()` once the grid is walked: the driver counts trials itself
        (stop() works only inside study.optimize, and ask/tell runs outside it)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return Grid


@contextlib.contextmanager
def _owner(out: Path) -> Iterator[None]:
    """Hold OUT/.sweep.lock for the sweep's lifetime: one driver per folder (the lock dies with its process)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".sweep.lock").open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(
                f"{out} is being swept by process {holder}; wait for it (or stop it) and rerun to continue"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---- the driver -------------------------------------------------------------------------------------------------


class Driver:
    """Asks the study for trials, runs them (`parallel` at once), reports, prunes and tells their outcomes."""

    def __init__(
        self,
        study: Any,
        base: RunConfig,
        out: Path,
        space: dict[str, Dim],
        o: SweepOptions,
        *,
        pairs_given: bool,
        progress: bool,
        echo: Callable[[str], None],
    ) -> None:
        self.study, self.base, self.out, self.space, self.o = study, base, out, space, o
        self.pairs_given, self.progress, self.echo = pairs_given, progress, echo
        self.active: list[Active] = []
        self.stop_requested = False
        self.interrupted = False
        self.warned_metric = False

    def done(self) -> int:
        """Trials that count towards --trials: complete, pruned or failed (not the interrupted ones)."""
        optuna = _optuna()
        state = optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        return sum(
            t.state in (state.COMPLETE, state.PRUNED) or (t.state == state.FAIL and t.number not in retried)
            for t in trials
        )

    def recover(self) -> None:
        """Trials the previous driver left running (it was killed): stop their processes; a run that finished
        meanwhile is scored, anything else is run again with the same settings."""
        optuna = _optuna()
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.user_attrs.get("pid") and t.user_attrs["pid"] != os.getpid():
                stop_orphan(int(t.user_attrs["pid"]), t.user_attrs.get("pid_start"))
            run = Path(t.user_attrs.get("run", ""))
            value = self._value(run) if run.name and RunDir(run).status().get("state") == "finished" else None
            if value is not None:
                self.study.tell(t.number, value)
                self.echo(f"trial {t.user_attrs.get('name', t.number)} finished while the sweep was away")
            else:
                self._retry(t.number, t.params, t.user_attrs.get("name", str(t.number)))

    def _retry(self, number: int, params: dict[str, Any], name: str) -> None:
        self.study.tell(number, state=_optuna().trial.TrialState.FAIL)
        self.study.enqueue_trial(params, user_attrs={"retry_of": number})
        self.echo(f"trial {name} was interrupted: it runs again with the same settings")

    def _value(self, run: Path) -> float | None:
        return metric_value(run, self.o.metric, mode=self.o.mode, best_of=self.base.train.early_stop_metric)

    def launch(self) -> Active:
        trial = self.study.ask()
        params = suggest(trial, self.space)
        cfg = trial_config(self.base, params)
        name = trial_name(trial.number, params)
        run = self.out / name
        shown = {k: display(v) for k, v in params.items()}
        trial.set_user_attr("name", name)
        trial.set_user_attr("run", str(run))
        trial.set_user_attr("params", shown)
        self.echo(f"[{self.done() + len(self.active) + 1}/{self.o.trials}] {name}")
        flip = default_mode(self.o.prune_metric) != self.o.mode  # Optuna compares in the study's direction
        active = Active(trial, name, params, run, Follower(trial, run, self.o.prune_metric, flip))
        if self.o.processes:
            active.start_process(cfg, self.pairs_given)
        else:
            active.run_here(cfg, self.pairs_given, self.progress)
        return active

    def finish(self, a: Active) -> None:
        """Tell the study how the trial ended; OUT/results.json is rewritten with it."""
        self._tell(a)
        _write_results(self.out, {**study_results(self.study, self.o, self.out), "stopped": False})

    def _tell(self, a: Active) -> None:
        state = _optuna().trial.TrialState
        assert a.outcome is not None
        f = a.follower
        if f.validations and not f.reported and not self.warned_metric:
            self.warned_metric = True
            self.echo(f"  note: no validation reported {self.o.prune_metric!r}, so nothing can be pruned")
        outcome = a.outcome
        if outcome.state == "finished":
            value = self._value(a.run)
            if value is None:
                outcome = Outcome("failed", f"no {self.o.metric} in {a.run} to score the trial by")
            else:
                self.study.tell(a.trial, value)
                self.echo(f"  {self.o.metric} {value:.4f}")
                return
        if outcome.state == "pruned":
            a.trial.set_user_attr("pruned_step", f.pruned_step)
            self.study.tell(a.trial, state=state.PRUNED)
            self.echo(
                f"  pruned at step {f.pruned_step} ({self.o.prune_metric} after {f.reported} validations)"
            )
        elif outcome.state == "failed":
            a.trial.set_user_attr("error", outcome.error)
            self.study.tell(a.trial, state=state.FAIL)
            self.echo(f"  failed: {outcome.error}")
        else:
            self.interrupted = True
            self._retry(a.trial.number, a.trial.params, a.name)

    def loop(self) -> None:
        """Run trials until the study holds `trials` done ones (or a stop is asked for)."""
        while not self.stop_requested and not self.interrupted:
            done = self.done()
            while (
                len(self.active) < self.o.parallel
                and done + len(self.active) < self.o.trials
                and not self.stop_requested
            ):
                self.active.append(self.launch())
            if not self.active:
                return
            for a in list(self.active):
                if a.poll():
                    self.active.remove(a)
                    self.finish(a)
            if self.active:
                time.sleep(POLL_S)

    def shutdown(self) -> None:
        """Stop the trials still running (they checkpoint); each is run again by the next driver."""
        for a in self.active:
            a.terminate()
        for a in self.active:
            while not a.poll():
                time.sleep(POLL_S)
            if a.outcome is not None and a.outcome.state == "pruned":
                self.finish(a)
            else:
                self.interrupted = True
                self._retry(a.trial.number, a.trial.params, a.name)
        self.active = []


@contextlib.contextmanager
def _stop_on_sigterm(driver: Driver) -> Iterator[None]:
    """SIGTERM asks the driver to stop launching and end its trials (Ctrl-C raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        driver.stop_requested = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- results ----------------------------------------------------------------------------------------------------


def study_results(study: Any, o: SweepOptions, out: Path) -> dict[str, Any]:
    """Every trial (in order) with its settings, status, score and time; the best one named."""
    state = _optuna().trial.TrialState
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != state.WAITING]
    retried = {t.user_attrs.get("retry_of") for t in trials}
    status = {state.COMPLETE: "ok", state.PRUNED: "pruned", state.RUNNING: "running", state.FAIL: "failed"}
    rows = []
    for t in trials:
        s = status.get(t.state, t.state.name.lower())
        if t.state == state.FAIL and (t.number in retried or not t.user_attrs.get("error")):
            s = "interrupted"
        rows.append(
            {
                "trial": t.number,
                "name": t.user_attrs.get("name", str(t.number)),
                "params": t.user_attrs.get("params", {k: display(v) for k, v in t.params.items()}),
                "run": t.user_attrs.get("run"),
                "status": s,
                "error": t.user_attrs.get("error") if s == "failed" else None,
                "metric": t.value if t.state == state.COMPLETE else None,
                "pruned_step": t.user_attrs.get("pruned_step"),
                "seconds": round(t.duration.total_seconds(), 1) if t.duration is not None else None,
            }
        )
    complete = [t for t in trials if t.state == state.COMPLETE]
    best = study.best_trial.user_attrs.get("name") if complete else None
    return {
        "metric": o.metric,
        "mode": o.mode,
        "best": best,
        "sampler": o.sampler,
        "pruner": o.pruner,
        "prune_metric": o.prune_metric,
        "trials": o.trials,
        "study": f"sqlite:///{(out / 'study.db').absolute()}",
        "jobs": rows,
    }


def _write_results(out: Path, results: dict[str, Any]) -> None:
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out / "results.json")


def run_sweep(
    base: RunConfig,
    out: str | Path,
    space: dict[str, Dim],
    options: SweepOptions | None = None,
    *,
    pairs_given: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume, or extend) the sweep in `out` until its study holds `options.trials` done trials;
    returns the results (also OUT/results.json). "stopped" is True when it ended early (a stop or Ctrl-C)."""
    optuna = _optuna()
    out = Path(out)
    o = resolve_options(options or SweepOptions(), space, base)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with _owner(out):
            _check_spec(out, _spec(base, space, o, pairs_given))
            study = open_study(out, space, o)
            driver = Driver(study, base, out, space, o, pairs_given=pairs_given, progress=progress, echo=echo)
            driver.recover()
            try:
                with _stop_on_sigterm(driver):
                    driver.loop()
            finally:
                driver.shutdown()
                results = study_results(study, o, out)
                results["stopped"] = driver.stop_requested or driver.interrupted
                _write_results(out, results)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return results
