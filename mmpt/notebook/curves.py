"""Loss and validation curves collected from metrics.jsonl events (headless: the panel only draws them)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmpt.runs import RunDir

TRAIN_PREFIX, VAL_PREFIX = "loss/", "val_loss/"


class Curves:
    """Per-pair training losses and validation metrics as {name: [(step, value), ...]}, fed event by event."""

    def __init__(self) -> None:
        self.train: dict[str, list[tuple[float, float]]] = {}
        self.val: dict[str, list[tuple[float, float]]] = {}
        self.version = 0  # bumped on every change, so a view redraws only when something is new

    def reset(self) -> None:
        """Forget everything (a resumed run rewrote its metrics.jsonl)."""
        self.train, self.val = {}, {}
        self.version += 1

    def feed(self, events: Iterable[dict[str, Any]]) -> None:
        """Add train/val events; a {"kind": "reset"} event clears the curves first."""
        for e in events:
            kind, step = e.get("kind"), e.get("step")
            if kind == "reset":
                self.reset()
            elif kind == "train" and step is not None:
                for key, value in e.items():
                    if key.startswith(TRAIN_PREFIX) and isinstance(value, int | float):
                        self.train.setdefault(key[len(TRAIN_PREFIX) :], []).append((step, float(value)))
                self.version += 1
            elif kind == "val" and step is not None:
                for key, value in e.items():
                    if (key.startswith(VAL_PREFIX) or "@" in key or "acc" in key) and isinstance(
                        value, int | float
                    ):
                        name = key[len(VAL_PREFIX) :] if key.startswith(VAL_PREFIX) else key
                        self.val.setdefault(name, []).append((step, float(value)))
                self.version += 1

    @classmethod
    def of_run(cls, run: str | Path) -> Curves:
        """All curves of a run directory (for overlaying past runs)."""
        curves = cls()
        curves.feed(RunDir(run).metrics())
        return curves
