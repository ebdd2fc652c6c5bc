"""Live loss and metric curves (pyqtgraph): series keyed by name, appended from metrics.jsonl events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from mmpt.explore.colours import category_colours

TRAIN_KEYS = ("loss",)  # plus every "loss/<pair>" key


def series_of(event: dict[str, Any]) -> dict[str, float]:
    """The curve values an event contributes: train loss and per-pair losses, validation figures."""
    kind = event.get("kind")
    out: dict[str, float] = {}
    if kind == "train":
        for key, value in event.items():
            if (key in TRAIN_KEYS or key.startswith("loss/")) and isinstance(value, int | float):
                out[key] = float(value)
    elif kind == "val":
        for key, value in event.items():
            if key not in ("step", "epoch", "time", "kind") and isinstance(value, int | float):
                out[key if key.startswith("val") else f"val_{key}"] = float(value)
    return out


class CurvePlot(pg.PlotWidget):
    """A step-vs-value plot with one line per series and a legend; `add_events` appends, `clear_curves` resets."""

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent=parent, background="w")
        self.setTitle(title, color="#303030")
        self.setLabel("bottom", "step", color="#303030")
        self.showGrid(x=True, y=True, alpha=0.2)
        for side in ("left", "bottom"):
            self.getAxis(side).setPen(pg.mkPen("#606060"))
            self.getAxis(side).setTextPen(pg.mkPen("#303030"))
        self.legend = self.addLegend(
            offset=(-10, 10),
            labelTextColor="#202020",
            brush=pg.mkBrush(255, 255, 255, 200),
            pen=pg.mkPen("#c0c0c0"),
        )
        self.data: dict[str, tuple[list[float], list[float]]] = {}
        self.lines: dict[str, pg.PlotDataItem] = {}

    def clear_curves(self) -> None:
        """Drop every series (a new job, or a resumed one that rewrote its metrics)."""
        for line in self.lines.values():
            self.removeItem(line)
        self.legend.clear()
        self.data.clear()
        self.lines.clear()

    def add_events(self, events: list[dict[str, Any]], prefix: str = "") -> None:
        """Append metrics.jsonl events (a {"kind": "reset"} event clears first)."""
        touched = set()
        for event in events:
            if event.get("kind") == "reset":
                self.clear_curves()
                continue
            step = event.get("step")
            if step is None:
                continue
            for name, value in series_of(event).items():
                xs, ys = self.data.setdefault(prefix + name, ([], []))
                xs.append(float(step))
                ys.append(value)
                touched.add(prefix + name)
        if touched:
            self._redraw(touched)

    def _redraw(self, names: set[str]) -> None:
        colours = category_colours(sorted(self.data))
        for name in sorted(names):
            xs, ys = self.data[name]
            line = self.lines.get(name)
            if line is None:
                dashed = name.split(" ")[-1].startswith("val")
                pen = pg.mkPen(
                    colours[name],
                    width=2,
                    style=pg.QtCore.Qt.PenStyle.DashLine if dashed else pg.QtCore.Qt.PenStyle.SolidLine,
                )
                line = self.plot(
                    [],
                    [],
                    pen=pen,
                    name=name,
                    symbol="o" if dashed else None,
                    symbolSize=5,
                    symbolBrush=colours[name],
                )
                self.lines[name] = line
            line.setData(np.asarray(xs), np.asarray(ys))

    def points(self, name: str) -> int:
        """How many values a series holds (tests)."""
        return len(self.data.get(name, ([], []))[0])
