"""Plain numpy geometry for the scatter view: point-in-polygon, density binning, and a hover index."""

from __future__ import annotations

import numpy as np


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the points inside `polygon` ([n, 2] vertices, closed implicitly), even-odd rule."""
    polygon = np.asarray(polygon, dtype=np.float64)
    if len(polygon) < 3:
        return np.zeros(len(x), dtype=bool)
    (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
    candidates = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    order = np.argsort(y[candidates], kind="stable")
    candidates = candidates[order]  # sorted by y: each edge only looks at the points in its own y-span
    px, py = x[candidates], y[candidates]
    inside = np.zeros(len(candidates), dtype=bool)
    xs, ys = polygon[:, 0], polygon[:, 1]
    xe, ye = np.roll(xs, -1), np.roll(ys, -1)
    lows = np.searchsorted(py, np.minimum(ys, ye), side="left")
    highs = np.searchsorted(py, np.maximum(ys, ye), side="left")
    for ax, ay, bx, by, lo, hi in zip(xs, ys, xe, ye, lows, highs, strict=True):
        if hi <= lo:
            continue  # horizontal edge, or no point in its span
        at = ax + (py[lo:hi] - ay) * (bx - ax) / (by - ay)
        inside[lo:hi] ^= px[lo:hi] < at
    mask = np.zeros(len(x), dtype=bool)
    mask[candidates[inside]] = True
    return mask


def points_in_rect(x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Boolean mask of the points inside the rectangle with corners (x0, y0) and (x1, y1)."""
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    return (x >= xa) & (x <= xb) & (y >= ya) & (y <= yb)


def density_rgba(
    x: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    palette: np.ndarray,
    bounds: tuple[float, float, float, float],
    shape: tuple[int, int],
) -> np.ndarray:
    """Points binned into a [width, height, 4] uint8 image: each pixel has the mean colour of its points and an
    opacity that grows with the log of their count (pyqtgraph's ImageItem takes [x, y] ordered arrays).

    `codes` index rows of `palette` ([k, 3] floats in 0..255); `bounds` is (x0, y0, x1, y1) of the image.
    """
    width, height = shape
    x0, y0, x1, y1 = bounds
    sx = width / max(x1 - x0, 1e-12)
    sy = height / max(y1 - y0, 1e-12)
    ix = ((x - x0) * sx).astype(np.int64)
    iy = ((y - y0) * sy).astype(np.int64)
    keep = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
    flat = ix[keep] * height + iy[keep]
    n = width * height
    counts = np.bincount(flat, minlength=n).astype(np.float32)
    colours = palette[codes[keep]].astype(np.float32)
    image = np.zeros((n, 4), dtype=np.float32)
    filled = counts > 0
    for channel in range(3):
        sums = np.bincount(flat, weights=colours[:, channel], minlength=n)
        image[filled, channel] = sums[filled] / counts[filled]
    if filled.any():
        level = np.log1p(counts[filled])
        image[filled, 3] = 90.0 + 165.0 * level / level.max()
    return image.reshape(width, height, 4).astype(np.uint8)


class HoverIndex:
    """Nearest point to a cursor in screen terms, from a KD-tree over the points' coordinates."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self._x = np.asarray(x, dtype=np.float64)
        self._y = np.asarray(y, dtype=np.float64)
        self._scale = np.array([np.ptp(self._x) or 1.0, np.ptp(self._y) or 1.0])
        from scipy.spatial import cKDTree  # imported here: scipy adds ~0.3 s to the app's start

        self._tree = cKDTree(np.column_stack([self._x, self._y]) / self._scale) if len(self._x) else None

    def nearest(self, x: float, y: float, radius_x: float, radius_y: float, k: int = 16) -> int:
        """Index of the point nearest to (x, y) within an ellipse of the given data-unit radii, or -1."""
        if self._tree is None:
            return -1
        rx, ry = radius_x / self._scale[0], radius_y / self._scale[1]
        query = np.array([x, y]) / self._scale
        dist, idx = self._tree.query(query, k=min(k, len(self._x)), distance_upper_bound=max(rx, ry))
        dist, idx = np.atleast_1d(dist), np.atleast_1d(idx)
        idx = idx[np.isfinite(dist)]
        if not len(idx):
            return -1
        dx = (self._x[idx] - x) / max(radius_x, 1e-300)
        dy = (self._y[idx] - y) / max(radius_y, 1e-300)
        d = dx * dx + dy * dy
        best = int(np.argmin(d))
        return int(idx[best]) if d[best] <= 1.0 else -1
