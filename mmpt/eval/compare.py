"""Side-by-side comparison of two eval reports (e.g. before and after fine-tuning) on the same split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmpt.eval.report import flatten


def compare(report_a: Mapping, report_b: Mapping, names: Sequence[str] = ("before", "after")) -> dict:
    """Every flattened metric of both reports with its delta (b - a), and zero-shot retention per modality.

    `zero_shot_retention[m]` = after / before zero-shot accuracy (None where before is 0 or either is
    missing): how much general zero-shot ability survives fine-tuning on the reference split.
    """
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"names must be two different labels, got {names!r}")
    a_name, b_name = names
    flat_a, flat_b = flatten(report_a), flatten(report_b)
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    metrics = {}
    for key in keys:
        a, b = flat_a.get(key), flat_b.get(key)
        metrics[key] = {a_name: a, b_name: b, "delta": None if a is None or b is None else b - a}
    retention = {}
    modalities = list(report_a.get("zero_shot", {})) + [
        m for m in report_b.get("zero_shot", {}) if m not in report_a.get("zero_shot", {})
    ]
    for m in modalities:
        a = flat_a.get(f"zero_shot.{m}.accuracy")
        b = flat_b.get(f"zero_shot.{m}.accuracy")
        retention[m] = None if a is None or b is None or a == 0 else b / a
    meta_a, meta_b = report_a.get("meta", {}), report_b.get("meta", {})
    return {
        "names": [a_name, b_name],
        "runs": [meta_a.get("run"), meta_b.get("run")],
        "split": meta_b.get("split", meta_a.get("split")),
        "metrics": metrics,
        "zero_shot_retention": retention,
    }


def _cell(x: float | int | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, int) and not signed:
        return str(x)
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def format_comparison(comparison: Mapping, *, contains: str | None = None) -> str:
    """A plain-text table: metric | a | b | delta, then the zero-shot retention lines.

    `contains` keeps only metrics whose key holds that text (e.g. "r@1").
    """
    a_name, b_name = comparison["names"]
    rows = [
        (key, _cell(v[a_name]), _cell(v[b_name]), _cell(v["delta"], signed=True))
        for key, v in comparison["metrics"].items()
        if contains is None or contains in key
    ]
    header = ("metric", a_name, b_name, "delta")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    for m, value in comparison.get("zero_shot_retention", {}).items():
        shown = "-" if value is None else f"{value:.1%}"
        out.append(f"zero-shot retention {m}: {shown} ({b_name} / {a_name} accuracy)")
    return "\n".join(out)
