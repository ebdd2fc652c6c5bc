"""Line charts as self-contained SVG text: redrawn in place inside an ipywidgets.HTML, no matplotlib, no flicker.

Replacing an HTML widget's value swaps one DOM subtree in a single frame, so curves update without the blank
frame that `clear_output` + re-plotting shows. Each series is thinned to at most MAX_POINTS vertices.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")
MAX_POINTS = 400
Series = Sequence[tuple[float, float]]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step) + 1)]


def thin(points: Series, limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `limit` points, evenly strided, always keeping the last one."""
    points = [(float(x), float(y)) for x, y in points if math.isfinite(y) and math.isfinite(x)]
    if len(points) <= limit:
        return points
    stride = math.ceil(len(points) / limit)
    kept = points[::stride]
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def line_chart(
    series: Mapping[str, Series],
    *,
    title: str = "",
    width: int = 440,
    height: int = 220,
    css_class: str = "mmpt-chart",
    dashed: Sequence[str] = (),
) -> str:
    """An SVG line chart of named (x, y) series sharing the axes; `dashed` names series drawn dashed (overlays)."""
    data = {name: thin(points) for name, points in series.items()}
    data = {name: pts for name, pts in data.items() if pts}
    left, right, top, bottom = 46, 10, 22, 34
    pw, ph = width - left - right, height - top - bottom
    out = [
        f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="font:11px sans-serif;background:#fff">'
    ]
    if title:
        out.append(f'<text x="{left}" y="14" font-weight="bold">{html.escape(title)}</text>')
    if not data:
        out.append(f'<text x="{left + 8}" y="{top + ph / 2}" fill="#888">waiting for data</text></svg>')
        return "".join(out)
    xs = [x for pts in data.values() for x, _ in pts]
    ys = [y for pts in data.values() for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
    for t in nice_ticks(y0, y1, 4):
        if y0 <= t <= y1:
            out.append(
                f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" fill="#555">{_fmt(t)}</text>'
            )
    for t in nice_ticks(x0, x1, 5):
        if x0 <= t <= x1:
            out.append(
                f'<text x="{sx(t):.1f}" y="{top + ph + 14}" text-anchor="middle" fill="#555">{_fmt(t)}</text>'
            )
    out.append(f'<text x="{left + pw}" y="{height - 4}" text-anchor="end" fill="#555">step</text>')
    for i, (name, pts) in enumerate(data.items()):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="4 3"' if name in dashed else ""
        out.append(
            f'<polyline class="mmpt-curve" data-name="{html.escape(name)}" data-n="{len(pts)}" '
            f'fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{path}"/>'
        )
        if len(pts) == 1:  # a lone point draws no line: mark it
            out.append(f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="2.5" fill="{colour}"/>')
        lx = left + 6 + (i % 3) * (pw // 3)
        ly = top + 12 + (i // 3) * 13
        out.append(f'<text x="{lx}" y="{ly}" fill="{colour}">{html.escape(name)} {_fmt(pts[-1][1])}</text>')
    out.append("</svg>")
    return "".join(out)
