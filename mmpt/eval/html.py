"""A small self-contained HTML eval report: metric tables, confusion matrices, ROC and training curves.

Figures are drawn as SVG by hand (no plotting dependency) and embedded as base64 `<img>` data URIs, so
the file is one page that opens anywhere, offline, and stays small.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path

from mmpt.eval.compare import format_comparison
from mmpt.eval.report import flatten

COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MAX_POINTS = 500  # vertices per training-curve line
MAX_SERIES = 10  # lines per chart
IGNORED_FIELDS = frozenset({"step", "epoch", "time", "kind"})

Series = tuple[str, Sequence[float], Sequence[float]]  # (name, xs, ys)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _short(name: str, limit: int = 22) -> str:
    """A legend label cut from the left, where dotted metric names differ least."""
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def _range(values: list[float], fixed: tuple[float, float] | None) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.05, 0.5)
    return lo - pad, hi + pad


def _thin(xs: Sequence[float], ys: Sequence[float], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    points = [
        (float(x), float(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(y) and math.isfinite(x)
    ]
    if len(points) > limit:
        points = [points[round(i * (len(points) - 1) / (limit - 1))] for i in range(limit)]
    return points


def svg_line_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    diagonal: bool = False,
    width: int = 580,
    height: int = 320,
) -> str:
    """Lines with axes, ticks and a legend on the right, as an SVG document."""
    lines = [(name, _thin(xs, ys)) for name, xs, ys in series[:MAX_SERIES]]
    x0, x1 = _range([x for _, pts in lines for x, _ in pts], xlim)
    y0, y1 = _range([y for _, pts in lines for _, y in pts], ylim)
    left, right, top, bottom = 58, 175, 28, 44
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left + pw / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text x="14" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 14 {top + ph / 2})">'
        f"{escape(ylabel)}</text>",
    ]
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle">{t:.4g}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{t:.4g}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    if diagonal:
        out.append(
            f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" stroke="#999" '
            'stroke-dasharray="4 3"/>'
        )
    for i, (name, pts) in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if len(pts) <= 30:  # few points (e.g. validation every epoch): mark them so a single one shows
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in pts]
        ly = top + 8 + i * 16
        out.append(
            f'<line x1="{left + pw + 10}" y1="{ly}" x2="{left + pw + 26}" y2="{ly}" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        out.append(f'<text x="{left + pw + 30}" y="{ly + 4}">{escape(_short(name))}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_heatmap(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str) -> str:
    """A confusion matrix (rows true, columns predicted) shaded by each row's fraction, as an SVG document."""
    n = len(labels)
    cell = max(4, min(30, 420 // max(n, 1)))
    show_labels, show_counts = n <= 40, n <= 15
    margin = 110 if show_labels else 30
    size = n * cell
    width, height = max(margin + size + 20, 7 * len(title) + 20), 30 + size + margin
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="10"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
    ]
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            frac = count / total
            shade = f"rgb({round(255 - 224 * frac)},{round(255 - 136 * frac)},{round(255 - 75 * frac)})"
            x, y = margin + j * cell, 30 + i * cell
            out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{shade}" stroke="#ddd"/>')
            if show_counts and count:
                colour = "white" if frac > 0.6 else "black"
                out.append(
                    f'<text x="{x + cell / 2}" y="{y + cell / 2 + 3}" text-anchor="middle" '
                    f'fill="{colour}">{count}</text>'
                )
    if show_labels:
        for k, name in enumerate(labels):
            short = escape(str(name)[:16])
            c = margin + k * cell + cell / 2
            out.append(
                f'<text x="{margin - 4}" y="{30 + k * cell + cell / 2 + 3}" text-anchor="end">{short}</text>'
            )
            out.append(
                f'<text x="{c}" y="{34 + size}" text-anchor="end" transform="rotate(-60 {c} {34 + size})">'
                f"{short}</text>"
            )
    out.append(f'<text x="{margin + size / 2}" y="{height - 4}" text-anchor="middle">predicted</text>')
    out.append(
        f'<text x="10" y="{30 + size / 2}" transform="rotate(-90 10 {30 + size / 2})" '
        'text-anchor="middle">true</text></svg>'
    )
    return "".join(out)


def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def read_metrics_jsonl(path: str | os.PathLike) -> list[dict]:
    """The events of a run's metrics.jsonl; unreadable lines (e.g. one being written) are skipped."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _curves(events: list[dict], kind: str, keep: Callable[[str], bool]) -> list[Series]:
    rows = [e for e in events if e.get("kind") == kind and isinstance(e.get("step"), int | float)]
    keys = sorted(
        {
            k
            for e in rows
            for k, v in e.items()
            if k not in IGNORED_FIELDS and keep(k) and isinstance(v, int | float) and not isinstance(v, bool)
        },
        key=lambda k: (k != "loss", k),
    )
    series: list[Series] = []
    for key in keys:
        pts = [(e["step"], e[key]) for e in rows if isinstance(e.get(key), int | float)]
        series.append((key, [p[0] for p in pts], [p[1] for p in pts]))
    return series


def training_figures(events: list[dict]) -> list[str]:
    """<img> tags: train loss and per-pair losses vs step, learning rate, and validation curves if logged."""
    charts = [
        (_curves(events, "train", lambda k: k == "loss" or k.startswith("loss/")), "training loss", "loss"),
        (_curves(events, "train", lambda k: k == "lr"), "learning rate", "lr"),
        (_curves(events, "val", lambda k: "loss" in k), "validation loss", "loss"),
        (_curves(events, "val", lambda k: "loss" not in k), "validation metrics", "value"),
    ]
    return [_img(svg_line_chart(s, title=t, xlabel="step", ylabel=y), t) for s, t, y in charts if s]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else escape(str(v))

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _classification(kind: str, name: str, r: Mapping) -> str:
    """One zero-shot or probe block: headline figures, per-class table, confusion matrix and ROC curves."""
    parts = [f"<h3>{escape(kind)}: {escape(name)}</h3>"]
    if r.get("accuracy") is None:
        parts.append(f"<p>{escape(r.get('note', 'no metrics'))}</p>")
    head = [
        ("accuracy", r.get("accuracy")),
        ("macro-F1", r.get("macro_f1")),
        ("ROC AUC (OvR)", r.get("roc_auc")),
        ("rows", r.get("n")),
    ]
    head += [
        (k.replace("_", " "), v) for k, v in r.items() if k.startswith("top") and k.endswith("_accuracy")
    ]
    parts.append(_table([h for h, _ in head], [[v for _, v in head]]))
    if r.get("absent_classes"):
        parts.append(f"<p>classes absent from the test rows: {escape(', '.join(r['absent_classes']))}</p>")
    for key, what in (
        ("unseen_test_labels", "test labels unseen in training (left out)"),
        ("unknown_labels", "labels that are not class names (left out)"),
    ):
        if r.get(key):
            parts.append(f"<p>{what}: {escape(', '.join(f'{k} ({v})' for k, v in r[key].items()))}</p>")
    auc = r.get("roc_auc_per_class", {})
    rows = [
        [c, p["precision"], p["recall"], p["f1"], p["support"], auc.get(c)]
        for c, p in r.get("per_class", {}).items()
    ]
    if rows:
        parts.append(_table(["class", "precision", "recall", "F1", "support", "ROC AUC"], rows))
    figures = []
    if r.get("confusion_matrix"):
        title = f"{kind} {name}: confusion matrix"
        figures.append(_img(svg_heatmap(r["confusion_matrix"], r["classes"], title=title), title))
    if r.get("roc_curves"):
        title = f"{kind} {name}: ROC (one-vs-rest)"
        series = [(c, cv["fpr"], cv["tpr"]) for c, cv in r["roc_curves"].items()]
        svg = svg_line_chart(
            series,
            title=title,
            xlabel="false positive rate",
            ylabel="true positive rate",
            xlim=(0, 1),
            ylim=(0, 1),
            diagonal=True,
        )
        figures.append(_img(svg, title))
    if figures:
        parts.append(f'<div class="figs">{"".join(figures)}</div>')
    return "".join(parts)


CSS = """body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.figs img{margin:4px;vertical-align:top}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"""


def render_html(
    report: Mapping, metrics_jsonl: str | os.PathLike | None = None, comparison: Mapping | None = None
) -> str:
    """The report as one HTML page (see `write_html`)."""
    meta = report.get("meta", {})
    title = f"mmpt eval: {meta.get('run', '')} {meta.get('split', '')}".strip()
    body = [f"<h1>{escape(title)}</h1>"]
    shown = [
        (k, v if isinstance(v, str | int | float) else json.dumps(v))
        for k, v in meta.items()
        if k != "skipped"
    ]
    body.append(f'<section id="meta">{_table(["", "value"], shown)}</section>')
    flat = flatten(report)
    summary = [
        [k, v]
        for k, v in flat.items()
        if k.split(".")[-1] in {"accuracy", "macro_f1", "r@1", "r@5", "r@10", "p@1"}
    ]
    body.append(f'<section id="summary"><h2>Summary</h2>{_table(["metric", "value"], summary)}</section>')
    if report.get("zero_shot"):
        blocks = "".join(_classification("zero-shot", m, r) for m, r in report["zero_shot"].items())
        body.append(f'<section id="zero-shot"><h2>Zero-shot classification</h2>{blocks}</section>')
    if report.get("retrieval"):
        rows = [
            [p, r.get("r@1"), r.get("r@5"), r.get("r@10"), r.get("median_rank"), r.get("n_queries")]
            for p, r in report["retrieval"].items()
        ]
        table = _table(["query → target", "R@1", "R@5", "R@10", "median rank", "queries"], rows)
        body.append(f'<section id="retrieval"><h2>Retrieval</h2>{table}</section>')
    if report.get("label_match"):
        rows = [[p, r.get("p@1"), r.get("n_queries")] for p, r in report["label_match"].items()]
        table = _table(["query → target", "P@1", "queries"], rows)
        body.append(f'<section id="label-match"><h2>Label match</h2>{table}</section>')
    if report.get("linear_probe"):
        blocks = "".join(_classification("linear probe", m, r) for m, r in report["linear_probe"].items())
        body.append(f'<section id="linear-probe"><h2>Linear probe</h2>{blocks}</section>')
    if metrics_jsonl is not None:
        path = Path(metrics_jsonl)
        figures = training_figures(read_metrics_jsonl(path)) if path.is_file() else []
        inner = (
            f'<div class="figs">{"".join(figures)}</div>'
            if figures
            else f"<p>no curves in {escape(str(path))}</p>"
        )
        body.append(f'<section id="training"><h2>Training curves</h2>{inner}</section>')
    if comparison is not None:
        body.append(
            f'<section id="comparison"><h2>Comparison</h2><pre>{escape(format_comparison(comparison))}'
            "</pre></section>"
        )
    if meta.get("skipped"):
        items = "".join(f"<li>{escape(s)}</li>" for s in meta["skipped"])
        body.append(f'<section id="skipped"><h2>Not computed</h2><ul>{items}</ul></section>')
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_html(
    report: Mapping,
    path: str | os.PathLike,
    metrics_jsonl: str | os.PathLike | None = None,
    comparison: Mapping | None = None,
) -> Path:
    """Write the report as a self-contained HTML page (tables, SVG figures, optional curves and comparison)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_html(report, metrics_jsonl, comparison), encoding="utf-8")
    os.replace(tmp, path)
    return path
