"""Side-by-side comparison of two reports and zero-shot retention."""

import pytest

from mmpt.eval.compare import compare, format_comparison
from mmpt.eval.report import build_report


def reports():
    before = build_report(
        zero_shot={"image": {"accuracy": 0.8, "macro_f1": 0.7}, "audio": {"accuracy": 0.0, "macro_f1": 0.0}},
        retrieval={"image_to_text": {"r@1": 0.5, "r@5": 0.9, "r@10": 1.0}},
        meta={"run": "base", "split": "test"},
    )
    after = build_report(
        zero_shot={"image": {"accuracy": 0.6, "macro_f1": 0.65}, "audio": {"accuracy": 0.3, "macro_f1": 0.2}},
        retrieval={"image_to_text": {"r@1": 0.75, "r@5": 0.9, "r@10": 1.0}},
        linear_probe={"image": {"accuracy": 0.95}},
        meta={"run": "tuned", "split": "test"},
    )
    return before, after


def test_deltas_and_retention():
    cmp = compare(*reports())
    assert cmp["names"] == ["before", "after"] and cmp["runs"] == ["base", "tuned"]
    row = cmp["metrics"]["zero_shot.image.accuracy"]
    assert row["before"] == 0.8 and row["after"] == 0.6 and row["delta"] == pytest.approx(-0.2)
    assert cmp["metrics"]["retrieval.image_to_text.r@1"]["delta"] == pytest.approx(0.25)
    assert cmp["metrics"]["linear_probe.image.accuracy"] == {"before": None, "after": 0.95, "delta": None}
    assert cmp["zero_shot_retention"]["image"] == pytest.approx(0.75)
    assert cmp["zero_shot_retention"]["audio"] is None  # before was 0


def test_text_table():
    cmp = compare(*reports(), names=("pretrained", "finetuned"))
    text = format_comparison(cmp)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "pretrained", "finetuned", "delta"]
    row = next(line for line in lines if line.startswith("retrieval.image_to_text.r@1"))
    assert row.split() == ["retrieval.image_to_text.r@1", "0.5000", "0.7500", "+0.2500"]
    assert "zero-shot retention image: 75.0% (finetuned / pretrained accuracy)" in text
    assert "zero-shot retention audio: -" in text
    only = format_comparison(cmp, contains="r@5").splitlines()
    assert len(only) == 3 + 2
    with pytest.raises(ValueError):
        compare(*reports(), names=("a", "a"))
