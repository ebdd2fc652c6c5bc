"""ExplorerPanel at scale: 100k points (50k rows x image + audio embeddings, 512 dims), figures as JSON.

Python side: Explorer PCA points, panel construction (jupyter-scatter widget + its serialised points), one
on-demand tooltip answer, one selection round (session -> widget + grid). With --browser: the same panel in
JupyterLab + headless Chromium, time from the cell's start to a drawn canvas, and a hover round trip.

    python benchmarks/notebook_explorer.py [--rows 50000] [--browser]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa


def make_dataset(path: Path, rows: int, dim: int = 512, seed: int = 0) -> None:
    """A blob-less mmpt dataset with 12 clustered labels and emb_bench_image / emb_bench_audio columns."""
    import lance

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, rows)
    centres = rng.normal(size=(12, dim)).astype(np.float32)
    columns = {
        "id": pa.array([f"r{i:07d}" for i in range(rows)]),
        "text": pa.array([f"item {i} of class {c}" for i, c in enumerate(labels)]),
        "label": pa.array([f"class {c}" for c in labels]),
        "split": pa.array(np.where(rng.random(rows) < 0.8, "train", "test")),
    }
    for m in ("image", "audio"):
        vectors = centres[labels] + rng.normal(scale=0.8, size=(rows, dim)).astype(np.float32)
        columns[f"emb_bench_{m}"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
    lance.write_dataset(pa.table(columns), str(path), mode="overwrite")


def python_figures(path: Path) -> dict[str, float]:
    from mmpt.explore.session import Explorer
    from mmpt.notebook.explorer import ExplorerPanel

    out: dict[str, float] = {}
    t = time.perf_counter()
    explorer = Explorer(str(path), "bench")
    out["explorer_open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    points = explorer.points("pca")
    out["points_pca_s"] = time.perf_counter() - t
    out["points"] = len(points)
    t = time.perf_counter()
    panel = ExplorerPanel(explorer, hover="text")
    out["panel_build_s"] = time.perf_counter() - t
    widget = panel.scatter.widget
    t = time.perf_counter()
    state = widget.get_state()
    out["widget_state_s"] = time.perf_counter() - t
    out["widget_points_bytes"] = int(np.asarray(widget.points).nbytes)
    out["widget_state_keys"] = len(state)
    sent: list[dict] = []
    widget.send = lambda msg, buffers=None: sent.append(msg)
    t = time.perf_counter()
    for i in range(0, 100_000, 10_000):
        widget._handle_custom_msg(
            {"type": "tooltip", "index": i % len(points), "properties": ["label"], "preview": "id"}, []
        )
    out["tooltip_answer_ms"] = (time.perf_counter() - t) * 100  # mean of 10, in ms
    t = time.perf_counter()
    panel.selection(list(points["id"][:500]))
    out["select_500_rows_s"] = time.perf_counter() - t
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def browser_figures(path: Path, work: Path) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import nbformat
    import playwright.sync_api as playwright
    from notebook_browser import CHROMIUM, RUN_ALL_JS, jupyterlab

    root = work / "root"
    root.mkdir()
    book = nbformat.v4.new_notebook()
    book.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    book.cells = [
        nbformat.v4.new_code_cell(
            "import time; t0 = time.time()\nfrom mmpt.notebook import ExplorerPanel\nimport mmpt\n"
            f"view = ExplorerPanel(mmpt.Explorer({str(path)!r}, 'bench'), hover='text')\n"
            "view.widget.add_class('bench-t0-' + str(int(t0 * 1000)))\nview"
        )
    ]
    nbformat.write(book, root / "bench.ipynb")
    out: dict[str, float] = {}
    with jupyterlab(root, work / "home") as url, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url.format(path="bench.ipynb"))
        page.get_by_text("| Idle").first.wait_for(timeout=120_000)
        page.evaluate(RUN_ALL_JS)
        canvas = page.locator(".mmpt-scatter canvas").first
        canvas.wait_for(timeout=180_000)
        page.wait_for_function(
            "() => { const c = document.querySelector('.mmpt-scatter canvas');"
            " return c && c.width > 100 && c.height > 100; }",
            timeout=60_000,
        )
        drawn = time.time()
        classes = page.locator(".mmpt-explorer-panel").get_attribute("class")
        t0 = int(next(c for c in classes.split() if c.startswith("bench-t0-"))[len("bench-t0-") :]) / 1000
        out["cell_start_to_canvas_s"] = round(drawn - t0, 2)
        shots = Path(__file__).resolve().parents[1] / "tests" / "artefacts"
        shots.mkdir(parents=True, exist_ok=True)
        page.locator(".mmpt-explorer-panel").screenshot(path=str(shots / "explorer_100k.png"))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows; points are twice this")
    parser.add_argument(
        "--browser", action="store_true", help="also time the canvas in JupyterLab + Chromium"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmpt-bench-explorer-"))
    try:
        path = work / "bench.lance"
        t = time.perf_counter()
        make_dataset(path, args.rows)
        result: dict[str, object] = {"rows": args.rows, "make_dataset_s": round(time.perf_counter() - t, 2)}
        result.update(python_figures(path))
        if args.browser:
            result.update(browser_figures(path, work))
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
