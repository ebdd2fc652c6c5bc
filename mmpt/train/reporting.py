"""`--report-to`: every metrics event of a run also goes to the configured experiment trackers, from rank 0 only.

RUN/metrics.jsonl stays the source of truth: the session follows it (mmpt.runs.MetricsTail) each time the
loop emits an event, so the trackers hold exactly its values, classification runs included. The run config
and the model size are logged as params, the final eval report (RUN/eval/final.json) as the summary. A
tracker that is not installed, cannot start or fails later costs one warning line; the run goes on.
RUN/trackers.json keeps each tracker's run id so that `--resume` reports into the same tracker runs.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmpt.runs import MetricsTail, RunDir
from mmpt.train.config import RunConfig
from mmpt.train.trackers import EXTRA, Tracker, start_tracker

NOT_METRICS = ("kind", "step", "time")
PARAM_KINDS = ("start",)  # events whose figures are settings (model size, total steps), not curves
SILENT_KINDS = ("end", "stopped")
STATE_FILE = "trackers.json"


def warn(line: str) -> None:
    """One warning line on stderr (the CLI's and a notebook's)."""
    print(f"mmpt: warning: {line}", file=sys.stderr, flush=True)


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class Reporting:
    """The trackers of one training session of a run; `hook` chains it into the loop's `on_event`."""

    def __init__(self, run: RunDir | None, trackers: list[Tracker]) -> None:
        self.run = run
        self.trackers = trackers
        self.opened_at = time.time()
        self.last_step = 0
        self._tail = MetricsTail(run.metrics_path) if run is not None else None

    def hook(self, train_kwargs: dict[str, Any]) -> dict[str, Any]:
        """`train()` keyword arguments with `on_event` forwarding to the trackers (after the caller's own)."""
        if not self.trackers:
            return train_kwargs
        inner: Callable[[dict[str, Any]], None] | None = train_kwargs.get("on_event")

        def on_event(event: dict[str, Any]) -> None:
            if inner is not None:
                inner(event)
            self.pump()

        return {**train_kwargs, "on_event": on_event}

    def pump(self) -> None:
        """Forward the events appended to metrics.jsonl since the last call (this session's only: a resumed
        run rewrites the file with its earlier events, which the trackers already have)."""
        if not self.trackers or self._tail is None:
            return
        for event in self._tail.read():
            if float(event.get("time", math.inf)) < self.opened_at - 1.0:
                continue
            self._forward(event)

    def _forward(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        values = {
            k: v
            for k, v in event.items()
            if k not in NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool)
        }
        if kind in SILENT_KINDS or not values:
            return
        if kind in PARAM_KINDS:
            self._each("log_params", {f"run.{k}": v for k, v in values.items()})
            return
        step = int(event.get("step", self.last_step))
        self.last_step = max(self.last_step, step)
        self._each("log", step, {k: float(v) for k, v in values.items()})

    def _each(self, method: str, *args: Any) -> None:
        """Call `method` on every tracker; one that raises is dropped with one warning line."""
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # a tracker's failure never stops training
                self.trackers.remove(tracker)
                warn(f"stopped reporting to {tracker.name}: {_why(exc)} (metrics.jsonl has every value)")

    def close(self, state: str) -> None:
        """Forward what is left, log the final eval report as the summary, end the tracker runs."""
        if not self.trackers or self.run is None:
            return
        self.pump()
        final = self.run.eval_dir / "final.json"
        if state == "finished" and final.is_file() and final.stat().st_mtime >= self.opened_at - 1.0:
            from mmpt.eval.report import flatten

            report = flatten(json.loads(final.read_text()))
            if report:
                self._each("summary", {f"eval/{k}": float(v) for k, v in report.items()}, self.last_step)
        self._each("close", state)
        self.trackers = []


def open_reporting(cfg: RunConfig, run: RunDir, *, resume: bool = False) -> Reporting:
    """Start the trackers of `cfg.train.report_to` for `run` (none off rank 0); failures are warning lines."""
    names = cfg.train.report_to
    if not names or int(os.environ.get("RANK", "0")) != 0:
        return Reporting(None, [])
    state_path = run.path / STATE_FILE
    previous: dict[str, str] = {}
    if resume and state_path.is_file():
        try:
            previous = json.loads(state_path.read_text())
        except ValueError:
            previous = {}
    config = {**cfg.to_dict(), "mmpt": {"run": str(Path(run.path).absolute())}}
    trackers: list[Tracker] = []
    for name in names:
        try:
            trackers.append(start_tracker(name, run.path, config, previous.get(name)))
        except ImportError as exc:
            warn(
                f"not reporting to {name}: {getattr(exc, 'name', None) or name} is not installed "
                f"(pip install 'mmpt[{EXTRA[name]}]'); the run goes on"
            )
        except Exception as exc:
            warn(f"not reporting to {name}: it could not start ({_why(exc)}); the run goes on")
    ids = {t.name: t.ident for t in trackers if t.ident}
    if ids:
        tmp = state_path.with_name(f".{STATE_FILE}.tmp")
        tmp.write_text(json.dumps({**previous, **ids}, indent=1) + "\n")
        tmp.replace(state_path)
    return Reporting(run, trackers)


@contextmanager
def reporting(cfg: RunConfig, run: RunDir, *, resume: bool = False) -> Iterator[Reporting]:
    """`with reporting(cfg, run) as r: train(cfg, run, **r.hook(kwargs)); evaluate...` — the trackers are
    closed as finished, stopped (the run can resume) or failed, with the final eval report as the summary."""
    session = open_reporting(cfg, run, resume=resume)
    try:
        yield session
    except BaseException as exc:
        session.close("stopped" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    state = run.status().get("state", "finished") if session.trackers else "finished"
    session.close("stopped" if state == "stopped" else "finished")
