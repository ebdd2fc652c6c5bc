"""What every job offers a UI to poll: new events, progress figures and its log, read from the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmpt.runs import MetricsTail, RunDir, tail_lines

RESET = {
    "kind": "reset"
}  # events() puts this first when metrics.jsonl was rewritten (a resume): clear curves


class Progress:
    """Running figures from metrics.jsonl events: step, total, ETA, samples/s, last losses, device memory."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start: dict[str, Any] = {}
        self.train: dict[str, Any] = {}
        self.val: dict[str, Any] = {}
        self.first: dict[str, Any] = {}  # the first train event since the last start: the ETA's reference
        self.ended: str | None = None

    def feed(self, events: list[dict[str, Any]]) -> None:
        """Take in events in file order."""
        for e in events:
            kind = e.get("kind")
            if kind == "start":
                self.start, self.first, self.ended = e, {}, None
            elif kind == "train":
                self.train = e
                self.first = self.first or e
            elif kind == "val":
                self.val = e
            elif kind in ("end", "stopped"):
                self.ended = kind

    def snapshot(self) -> dict[str, Any]:
        """{"step", "total", "epoch", "fraction", "eta_s", "samples_per_s", "loss", "losses", "lr", "mem_gb",
        "val", "ended"}; None where not known yet."""
        tr, st = self.train, self.start
        step = max(tr.get("step", 0), st.get("step", 0)) if (tr or st) else None
        total = st.get("total_steps")
        return {
            "step": step,
            "total": total,
            "epoch": tr.get("epoch", st.get("epoch")),
            "fraction": step / total if step is not None and total else None,
            "eta_s": 0.0 if self.ended else self._eta(step, total),
            "samples_per_s": tr.get("samples_per_s"),
            "loss": tr.get("loss"),
            "losses": {k[len("loss/") :]: v for k, v in tr.items() if k.startswith("loss/")},
            "lr": tr.get("lr"),
            "mem_gb": tr.get("mem_gb"),
            "val": {k: v for k, v in self.val.items() if k not in ("kind", "time")},
            "ended": self.ended,
        }

    def _eta(self, step: int | None, total: int | None) -> float | None:
        """Seconds left at the step rate seen since the (last) start."""
        ref = self.first if self.first and self.first is not self.train else self.start
        if not (step and total and ref and self.train and "time" in ref and "time" in self.train):
            return None
        done, elapsed = step - ref.get("step", 0), self.train["time"] - ref["time"]
        if done <= 0 or elapsed <= 0:
            return None
        return max(0.0, (total - step) * elapsed / done)


class Followable:
    """A job's run directory followed by polling: `events()`, `progress()` and `log_tail(n)`."""

    def __init__(self, run: str | Path, kind: str) -> None:
        self.run = Path(run).absolute()
        self.kind = kind
        self.rundir = RunDir(self.run)
        self._events = MetricsTail(self.rundir.metrics_path)
        self._figures = MetricsTail(self.rundir.metrics_path)
        self._progress = Progress()

    def events(self) -> list[dict[str, Any]]:
        """Events logged since the previous call (the first call: all so far); RESET first after a rewrite."""
        new = self._events.read()
        return [dict(RESET), *new] if self._events.restarted else new

    def progress(self) -> dict[str, Any]:
        """The latest figures (see Progress.snapshot); independent of what events() has handed out."""
        new = self._figures.read()
        if self._figures.restarted:
            self._progress.reset()
        self._progress.feed(new)
        return self._progress.snapshot()

    def log_tail(self, n: int = 20) -> list[str]:
        """The last `n` lines of the job's output (stdout and stderr, in the order written)."""
        log = self.rundir.job().get("log")
        return tail_lines(self.run / log, n) if log else []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r}, {str(self.run)!r})"
