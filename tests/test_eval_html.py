"""The HTML report: sections present, figures embedded as valid SVG images, training curves read."""

import base64
import json
import re
import xml.etree.ElementTree as ET

import numpy as np

from mmpt.eval.compare import compare
from mmpt.eval.html import read_metrics_jsonl, svg_heatmap, svg_line_chart, write_html
from mmpt.eval.report import evaluate_embeddings

LABELS = ["red <circle>", "blue square", "green star"]


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def report():
    rng = np.random.default_rng(0)
    idx = [i % 3 for i in range(24)]
    rows = np.eye(3, 8)[idx] * 2 + rng.normal(size=(24, 8))
    ids = [str(i) for i in range(24)]
    embs = {
        m: (ids, [LABELS[i] for i in idx], unit(rows + 0.1 * rng.normal(size=rows.shape)))
        for m in ("image", "text")
    }

    def encode(texts):
        return unit(np.stack([np.eye(3, 8)[LABELS.index(t)] for t in texts]))

    return evaluate_embeddings(embs, encode, embs, meta={"run": "runs/demo", "split": "test"})


def images(html: str) -> list[ET.Element]:
    out = []
    for data in re.findall(r'<img alt="[^"]*" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)">', html):
        out.append(ET.fromstring(base64.b64decode(data)))
    return out


def test_html_report_has_sections_figures_and_curves(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        {
            "step": s,
            "epoch": 0,
            "time": s * 0.1,
            "kind": "train",
            "loss": 4 - s / 10,
            "loss/image_text": 2 - s / 20,
            "lr": 1e-3,
        }
        for s in range(1, 30)
    ]
    lines += [
        {
            "step": 10,
            "epoch": 0,
            "time": 1.0,
            "kind": "val",
            "val_loss": 3.0,
            "retrieval.image_to_text.r@1": 0.2,
        },
        {
            "step": 20,
            "epoch": 1,
            "time": 2.0,
            "kind": "val",
            "val_loss": 2.5,
            "retrieval.image_to_text.r@1": 0.4,
        },
    ]
    metrics.write_text(
        "\n".join(json.dumps(x) for x in lines) + '\n{"step": 31, "kind": "tr'
    )  # torn last line
    r = report()
    path = write_html(r, tmp_path / "eval" / "test.html", metrics, compare(r, r))
    html = path.read_text()
    for section in (
        "meta",
        "summary",
        "zero-shot",
        "retrieval",
        "label-match",
        "linear-probe",
        "training",
        "comparison",
    ):
        assert f'<section id="{section}">' in html
    assert "red &lt;circle&gt;" in html and "red <circle>" not in html
    figures = images(html)
    # zero-shot image + probes image, text: confusion and ROC each; train loss, lr, val loss, val metrics
    assert len(figures) == 3 * 2 + 4
    assert all(f.tag == "{http://www.w3.org/2000/svg}svg" for f in figures)
    titles = [f.find("{http://www.w3.org/2000/svg}text").text for f in figures]
    assert "zero-shot image: confusion matrix" in titles and "training loss" in titles
    assert "validation metrics" in titles
    assert len(read_metrics_jsonl(metrics)) == len(lines)
    assert [p.name for p in path.parent.iterdir()] == ["test.html"]


def test_missing_metrics_file_and_big_charts_still_render(tmp_path):
    path = write_html(report(), tmp_path / "r.html", tmp_path / "absent.jsonl")
    assert "no curves in" in path.read_text()
    big = svg_heatmap(np.eye(60, dtype=int).tolist(), [str(i) for i in range(60)], title="big")
    assert ET.fromstring(big).tag.endswith("svg")
    xs = np.arange(5000.0)
    chart = svg_line_chart([("flat", xs, np.ones_like(xs))], title="t", xlabel="x", ylabel="y")
    polyline = ET.fromstring(chart).find("{http://www.w3.org/2000/svg}polyline")
    assert len(polyline.get("points").split()) == 500
