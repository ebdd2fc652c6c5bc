"""The scatter view: plain numpy arrays in, hover / click / rectangle and lasso selection out (pyqtgraph raster).

Up to `DENSITY_THRESHOLD` points are drawn as one ScatterPlotItem per colour (a single brush each, which is what
keeps setData fast). Above it the view shows a density image (points binned with numpy at screen resolution,
recomputed on pan/zoom) and draws the points themselves once fewer than `ZOOMED_POINTS` are in view. Hover uses a
KD-tree (pyqtgraph's pointsAt is far too slow at this size); selections are computed with numpy.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from gui.geometry import HoverIndex, density_rgba, points_in_polygon, points_in_rect
from gui.overlay import RingOverlay

DENSITY_THRESHOLD = 300_000
ZOOMED_POINTS = 60_000
HOVER_RADIUS_PX = 8
POINT_SIZE = 6
RASTER_MARKS = 3000  # selections larger than this are outlined by a RingOverlay image
MODES = ("pan", "rect", "lasso")


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b)."""
    c = QColor(colour)
    return c.red(), c.green(), c.blue()


class SelectViewBox(pg.ViewBox):
    """A ViewBox whose left drag pans, draws a rectangle or draws a lasso, depending on `mode`."""

    def __init__(self, view: ScatterView) -> None:
        super().__init__()
        self.view = view
        self.mode = "pan"
        self._path: list[QPointF] = []
        self._outline = pg.QtWidgets.QGraphicsPathItem()
        pen = QPen(QColor("#202020"))
        pen.setCosmetic(True)
        pen.setWidth(1)
        pen.setStyle(Qt.PenStyle.DashLine)
        self._outline.setPen(pen)
        self._outline.setZValue(1e6)
        self.addItem(self._outline, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph's name
        if self.mode == "pan" or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        pos = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            self._path = [self.mapSceneToView(ev.buttonDownScenePos()), pos]
        else:
            self._path.append(pos)
        self._draw()
        if ev.isFinish():
            outline = np.array([(p.x(), p.y()) for p in self._path])
            self._path = []
            self._outline.setPath(QPainterPath())
            self.view.select_shape(self.mode, outline)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph's name
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            pos = self.mapSceneToView(ev.scenePos())
            self.view.click_at(pos.x(), pos.y())
            return
        super().mouseClickEvent(ev)

    def _draw(self) -> None:
        path = QPainterPath()
        if self.mode == "rect":
            a, b = self._path[0], self._path[-1]
            path.addRect(min(a.x(), b.x()), min(a.y(), b.y()), abs(b.x() - a.x()), abs(b.y() - a.y()))
        else:
            path.moveTo(self._path[0])
            for p in self._path[1:]:
                path.lineTo(p)
            path.closeSubpath()
        self._outline.setPath(path)


class ScatterView(QWidget):
    """A 2-D scatter of categorical points with hover, click, rectangle/lasso selection and highlight overlays."""

    hovered = Signal(int)  # point index under the cursor, -1 when none
    clicked = Signal(int)  # point index clicked, -1 when none
    selectionChanged = Signal(object)  # np.ndarray of selected point indices (from a drawn shape)  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.codes = np.zeros(0, dtype=np.int64)
        self.palette = np.zeros((0, 3))
        self.colours: list[str] = []
        self.names: list[str] = []
        self.selection = np.zeros(0, dtype=np.int64)
        self.hover_index = -1
        self.density = False
        self._hover: HoverIndex | None = None
        self._items: list[pg.ScatterPlotItem] = []

        self.box = SelectViewBox(self)
        self.plot = pg.PlotWidget(viewBox=self.box, background="w")
        self.plot.setMenuEnabled(False)
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.setPen(pg.mkPen("#606060"))
            axis.setTextPen(pg.mkPen("#303030"))
        self.image = pg.ImageItem()
        self.image.setZValue(-10)
        self.plot.addItem(self.image, ignoreBounds=True)
        self.selected_item = pg.ScatterPlotItem(
            size=POINT_SIZE + 4, pen=pg.mkPen("#111111", width=1.5), brush=None, pxMode=True
        )
        self.highlight_item = pg.ScatterPlotItem(
            size=POINT_SIZE + 10, pen=pg.mkPen("#e6007e", width=2.5), brush=None, symbol="o", pxMode=True
        )
        self.hover_item = pg.ScatterPlotItem(
            size=POINT_SIZE + 12,
            pen=pg.mkPen("#000000", width=2),
            brush=pg.mkBrush(255, 255, 255, 60),
            pxMode=True,
        )
        self.selected_rings = RingOverlay((20, 20, 20, 120), radius=4)
        self.selected_rings.setVisible(False)
        for z, item in (
            (19, self.selected_rings),
            (20, self.selected_item),
            (30, self.highlight_item),
            (40, self.hover_item),
        ):
            item.setZValue(z)
            self.plot.addItem(item, ignoreBounds=True)

        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.status = QLabel()
        self.status.setObjectName("scatterStatus")
        tools = QHBoxLayout()
        self.mode_buttons = QButtonGroup(self)
        for mode, text, tip in (
            ("pan", "Pan", "drag to pan, wheel to zoom"),
            ("rect", "Rectangle", "drag a rectangle to select"),
            ("lasso", "Lasso", "draw around points to select"),
        ):
            button = QToolButton(text=text, checkable=True, toolTip=tip)
            button.setObjectName(f"mode_{mode}")
            button.clicked.connect(lambda _=False, m=mode: self.set_mode(m))
            self.mode_buttons.addButton(button)
            tools.addWidget(button)
        self.mode_buttons.buttons()[0].setChecked(True)
        reset = QToolButton(text="Reset view", toolTip="fit all points")
        reset.clicked.connect(self.reset_view)
        tools.addWidget(reset)
        tools.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(tools)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.legend)

        self._density_timer = QTimer(self, singleShot=True, interval=30)
        self._density_timer.timeout.connect(self._update_view)
        self.box.sigRangeChanged.connect(self._range_changed)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)

    # --- data ------------------------------------------------------------------------------------
    def set_points(
        self,
        x: np.ndarray,
        y: np.ndarray,
        codes: np.ndarray,
        colours: list[str],
        names: list[str] | None = None,
    ) -> None:
        """Show points (x, y) coloured by `colours[codes]`; `names` label the colours in the legend."""
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.codes = np.asarray(codes, dtype=np.int64)
        self.colours = list(colours)
        self.names = list(names) if names is not None else [str(i) for i in range(len(colours))]
        self.palette = np.array([hex_rgb(c) for c in colours], dtype=np.float32).reshape(-1, 3)
        self._hover = HoverIndex(self.x, self.y)
        self.density = len(self.x) > DENSITY_THRESHOLD
        self.selection = np.zeros(0, dtype=np.int64)
        self.selected_item.clear()
        self.selected_rings.set_points(self.x[:0], self.y[:0])
        self.highlight_item.clear()
        self._set_hover(-1)
        self.image.setVisible(self.density)
        if self.density:
            self._draw_points(None)
        else:
            self._draw_points(np.arange(len(self.x)))
        self._set_legend()
        self.reset_view()
        self._update_status()

    def set_colours(self, codes: np.ndarray, colours: list[str], names: list[str] | None = None) -> None:
        """Recolour the same points (another colour-by)."""
        keep_sel, keep_hi = self.selection, self._highlight_indices()
        view = self.box.viewRange()
        self.set_points(self.x, self.y, codes, colours, names)
        self.box.setRange(xRange=view[0], yRange=view[1], padding=0)
        self.set_selection(keep_sel)
        self.set_highlight(keep_hi)

    def _draw_points(self, indices: np.ndarray | None) -> None:
        """One ScatterPlotItem per colour for the given points (None: no points, density only)."""
        for item in self._items:
            self.plot.removeItem(item)
        self._items = []
        if indices is None or not len(indices):
            return
        codes = self.codes[indices]
        order = np.argsort(codes, kind="stable")
        sorted_idx, sorted_codes = indices[order], codes[order]
        bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
        for chunk in np.split(sorted_idx, bounds):
            code = int(self.codes[chunk[0]])
            item = pg.ScatterPlotItem(
                x=self.x[chunk],
                y=self.y[chunk],
                size=POINT_SIZE,
                pen=None,
                brush=pg.mkBrush(self.colours[code]),
                pxMode=True,
                antialias=False,
            )
            self.plot.addItem(item)
            self._items.append(item)

    def _set_legend(self) -> None:
        used = np.bincount(self.codes, minlength=len(self.colours)) if len(self.codes) else []
        shown = [(n, c) for i, (n, c) in enumerate(zip(self.names, self.colours, strict=False)) if used[i]][
            :40
        ]
        self.legend.setText(
            "  ".join(
                f"<span style='color:{c}; font-size:14pt'>&#9679;</span>&nbsp;{n.replace(' ', '&nbsp;')}"
                for n, c in shown
            )
        )

    # --- view ------------------------------------------------------------------------------------
    def reset_view(self) -> None:
        """Fit every point."""
        if len(self.x):
            self.box.setRange(
                xRange=(self.x.min(), self.x.max()), yRange=(self.y.min(), self.y.max()), padding=0.05
            )
        if self.density:
            self._update_density()

    def _range_changed(self, *_: object) -> None:
        if self.density or self.selected_rings.isVisible():
            self._density_timer.start()

    def _update_view(self) -> None:
        """After pan/zoom: re-bin the density image and re-rasterise the selection rings (when in use)."""
        if self.density:
            self._update_density()
        if self.selected_rings.isVisible():
            self._redraw_rings()

    def _screen_size(self) -> tuple[int, int]:
        rect = self.box.sceneBoundingRect()
        return max(int(rect.width()), 16), max(int(rect.height()), 16)

    def _redraw_rings(self) -> None:
        self.selected_rings.redraw(self.box.viewRange(), self._screen_size())

    def _update_density(self) -> None:
        """Re-bin the points in view at screen resolution; draw the points themselves when few are in view."""
        (x0, x1), (y0, y1) = self.box.viewRange()
        width, height = self._screen_size()
        rgba = density_rgba(self.x, self.y, self.codes, self.palette, (x0, y0, x1, y1), (width, height))
        self.image.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.image.setRect(pg.QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        visible = np.flatnonzero(points_in_rect(self.x, self.y, x0, y0, x1, y1))
        self._draw_points(visible if len(visible) <= ZOOMED_POINTS else None)

    def set_mode(self, mode: str) -> None:
        """'pan', 'rect' or 'lasso': what a left drag does."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.box.mode = mode
        for button in self.mode_buttons.buttons():
            button.setChecked(button.objectName() == f"mode_{mode}")

    # --- hover, click and selection --------------------------------------------------------------
    def point_at(self, x: float, y: float, radius_px: float = HOVER_RADIUS_PX) -> int:
        """Index of the point within `radius_px` screen pixels of data position (x, y), or -1."""
        if self._hover is None:
            return -1
        px, py = self.box.viewPixelSize()
        return self._hover.nearest(x, y, radius_px * px, radius_px * py)

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        if not self.box.sceneBoundingRect().contains(scene_pos):
            self._set_hover(-1)
            return
        pos = self.box.mapSceneToView(scene_pos)
        self._set_hover(self.point_at(pos.x(), pos.y()))

    def hover_at(self, x: float, y: float) -> int:
        """Hover data position (x, y) as the mouse would; returns the hovered index."""
        self._set_hover(self.point_at(x, y))
        return self.hover_index

    def _set_hover(self, index: int) -> None:
        if index == self.hover_index:
            return
        self.hover_index = index
        if index < 0:
            self.hover_item.clear()
        else:
            self.hover_item.setData(x=[self.x[index]], y=[self.y[index]])
        self.hovered.emit(index)

    def click_at(self, x: float, y: float) -> int:
        """Click data position (x, y); emits `clicked` with the point there (or -1)."""
        index = self.point_at(x, y)
        self.clicked.emit(index)
        return index

    def select_shape(self, mode: str, outline: np.ndarray) -> np.ndarray:
        """Select the points inside a rectangle (two corners) or a lasso polygon (data coordinates)."""
        if mode == "rect":
            (ax, ay), (bx, by) = outline[0], outline[-1]
            mask = points_in_rect(self.x, self.y, ax, ay, bx, by)
        else:
            mask = points_in_polygon(self.x, self.y, outline)
        indices = np.flatnonzero(mask)
        self.set_selection(indices)
        self.selectionChanged.emit(indices)
        return indices

    def set_selection(self, indices: np.ndarray) -> None:
        """Outline these points (no signal: this is how the model's selection is shown)."""
        self.selection = np.asarray(indices, dtype=np.int64)
        xs, ys = self.x[self.selection], self.y[self.selection]
        if 0 < len(self.selection) <= RASTER_MARKS:
            self.selected_item.setData(x=xs, y=ys)
        else:
            self.selected_item.clear()
        many = len(self.selection) > RASTER_MARKS
        self.selected_rings.set_points(xs if many else xs[:0], ys if many else ys[:0])
        if many:
            self._redraw_rings()
        self._update_status()

    def set_highlight(self, indices: np.ndarray) -> None:
        """Ring these points (search hits, neighbours)."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices):
            self.highlight_item.setData(x=self.x[indices], y=self.y[indices])
        else:
            self.highlight_item.clear()
        self._highlighted = indices
        self._update_status()

    def _highlight_indices(self) -> np.ndarray:
        return getattr(self, "_highlighted", np.zeros(0, dtype=np.int64))

    def _update_status(self) -> None:
        mode = "density" if self.density else "points"
        text = f"{len(self.x):,} points ({mode}) · {len(self.selection):,} selected"
        if len(self._highlight_indices()):
            text += f" · {len(self._highlight_indices()):,} highlighted"
        self.status.setText(text)
