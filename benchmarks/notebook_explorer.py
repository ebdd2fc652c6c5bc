"""ExplorerPanel at scale: 100k points (50k rows x image + audio embeddings, 512 dims), figures as JSON.

Python side: Explorer PCA points, panel construction (jupyter-scatter widget + its serialised points), one
on-demand tooltip answer, one selection round (session -> widget + grid). With --browser: the same panel in
JupyterLab + headless Chromium: time from the cell's start to the first frame with all points drawn, and mouse
move -> hover card (the hovered row's card from the kernel) for a few points; a screenshot of the map.

    python benchmarks/notebook_explorer.py [--rows 50000] [--browser] [--json out.json]
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
    """A blob-less mmpt dataset with 12 clustered labels and unit-length emb_bench_image / emb_bench_audio columns."""
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
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # unit length, as `mmpt embed` writes them
        columns[f"emb_bench_{m}"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
    lance.write_dataset(pa.table(columns), str(path), mode="overwrite")


def python_figures(path: Path) -> dict[str, float]:
    from mmpt.explore.session import Explorer
    from mmpt.notebook.explorer import ExplorerPanel

    out: dict[str, float] = {}
    t = time.perf_counter()
    import jscatter  # noqa: F401  (ExplorerPanel imports it on first use: a one-off cost, timed apart)

    out["jscatter_import_s"] = time.perf_counter() - t
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


# In the page, before Run All: for each explorer panel, the wall-clock time (ms) of the first frame where its
# scatter has drawn points.
DRAWN_WATCH_JS = """() => {
  const drawn = window.__benchDrawn = {};
  const tick = () => {
    for (const panel of document.querySelectorAll('.mmpt-explorer-panel')) {
      const name = [...panel.classList].find(c => c.startsWith('bench-run-'));
      const host = [...panel.querySelectorAll('.mmpt-scatter *')].find(e => e.api && e.api.get);
      if (name && !drawn[name] && host && host.api.get('isPointsDrawn') && host.api.get('points').length)
        drawn[name] = {t: Date.now(), n: host.api.get('points').length};
    }
    if (Object.keys(drawn).length < 2) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""

# Where some points are on screen (client px): a sample of indices, through regl-scatterplot's own camera.
SAMPLE_JS = """(step) => {
  const host = [...document.querySelectorAll('.bench-run-warm .mmpt-scatter *')].find(e => e.api && e.api.get);
  const api = host.api, canvas = api.get('canvas'), r = canvas.getBoundingClientRect();
  const n = api.get('points').length, out = [];
  for (let i = 0; i < n; i += step) {
    const [x, y] = api.getScreenPosition(i);
    if (x > 20 && x < r.width - 20 && y > 20 && y < r.height - 20
        && document.elementFromPoint(r.x + x, r.y + y) === canvas) out.push([i, r.x + x, r.y + y]);
  }
  return {rect: [r.x, r.y, r.width, r.height], points: out};
}"""

# One hover: time (performance.now) of the mouse move and of the hover card showing each new row id.
CARD_WATCH_JS = """() => {
  const panel = document.querySelector('.bench-run-warm');
  const w = window.__benchHover = {t0: null, cards: []};
  window.addEventListener('mousemove', () => { if (w.t0 === null) w.t0 = performance.now(); },
                          {capture: true, once: true});
  new MutationObserver(() => {
    const card = panel.querySelector('.mmpt-hover-card');
    const id = card && card.getAttribute('data-id');
    if (id && (!w.cards.length || w.cards[w.cards.length - 1].id !== id)) w.cards.push({t: performance.now(), id});
  }).observe(panel.querySelector('.mmpt-hover'), {subtree: true, childList: true});
}"""


def browser_figures(path: Path, work: Path, hovers: int = 7) -> dict[str, object]:
    """JupyterLab + headless Chromium: cell start -> points drawn, and mouse move -> hover card, at full size.

    The imports run in a cell of their own first, as in a notebook. Then the same panel cell runs twice: "cold"
    (the first Explorer of the kernel: it imports torch, jscatter, ... on first use) and "warm" (modules
    loaded; the dataset is opened and laid out again). Each cell opens the Explorer, lays the points out (PCA)
    and shows the panel; hovers are timed on the warm one."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import nbformat
    import playwright.sync_api as playwright
    from notebook_browser import CHROMIUM, RUN_ALL_JS, jupyterlab, kernel

    root = work / "root"
    root.mkdir()
    book = nbformat.v4.new_notebook()
    book.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    panel_cell = (
        "t0 = time.time()\n"
        f"{{var}} = ExplorerPanel(mmpt.Explorer({str(path)!r}, 'bench'), hover='text')\n"
        "{var}.widget.add_class('bench-run-{run}').add_class(f'bench-t0-{{int(t0 * 1000)}}')\n"
        "{var}.widget.add_class(f'bench-t1-{{int(time.time() * 1000)}}')\n"
        "{var}"
    )
    book.cells = [
        nbformat.v4.new_code_cell("import time\n\nimport mmpt\nfrom mmpt.notebook import ExplorerPanel"),
        nbformat.v4.new_code_cell(panel_cell.format(var="view_cold", run="cold")),
        nbformat.v4.new_code_cell(panel_cell.format(var="view", run="warm")),
    ]
    nbformat.write(book, root / "bench.ipynb")
    out: dict[str, object] = {}
    with jupyterlab(root, work / "home") as url, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url.format(path="bench.ipynb"))
        page.get_by_text("| Idle").first.wait_for(timeout=120_000)
        page.evaluate(DRAWN_WATCH_JS)
        page.evaluate(RUN_ALL_JS)
        try:
            page.wait_for_function(
                "() => Object.keys(window.__benchDrawn).length === 2", timeout=120_000, polling=100
            )
        except playwright.TimeoutError:
            page.screenshot(path=str(work.parent / "bench-timeout.png"))
            state = page.evaluate(
                "() => [window.__benchDrawn, [...document.querySelectorAll('.mmpt-explorer-panel')]"
                ".map(p => p.className)]"
            )
            raise RuntimeError(f"the panels were not drawn: {state}") from None
        drawn = page.evaluate("() => window.__benchDrawn")
        for run in ("cold", "warm"):
            classes = page.locator(f".bench-run-{run}").get_attribute("class").split()
            t0, t1 = (
                int(next(c for c in classes if c.startswith(k))[len(k) :]) for k in ("bench-t0-", "bench-t1-")
            )
            got = drawn[f"bench-run-{run}"]
            out["points_drawn"] = got["n"]
            out[f"{run}_cell_start_to_points_drawn_s"] = round((got["t"] - t0) / 1000, 2)
            out[f"{run}_cell_python_s"] = round((t1 - t0) / 1000, 2)  # Explorer open + PCA + panel, kernel
            out[f"{run}_panel_shown_to_points_drawn_s"] = round((got["t"] - t1) / 1000, 2)  # sent, drawn
        page.get_by_text("| Idle").first.wait_for(timeout=60_000)

        kernel(page, "view_cold.close()")
        page.locator(".bench-run-warm .mmpt-scatter").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        sample = page.evaluate(SAMPLE_JS, max(1, out["points_drawn"] // 400))
        rx, ry, rw, rh = sample["rect"]
        spread = sample["points"][:: max(1, len(sample["points"]) // hovers)][:hovers]
        card_ms, hovered = [], []
        for _, x, y in spread:
            page.mouse.move(rx + rw / 2, ry + rh + 30)  # off the map
            page.wait_for_function(
                "() => !document.querySelector('.bench-run-warm .mmpt-scatter').matches(':hover')",
                timeout=5000,
            )
            page.wait_for_timeout(400)
            page.evaluate(CARD_WATCH_JS)
            page.mouse.move(x, y)
            deadline = time.monotonic() + 10
            index = None
            while time.monotonic() < deadline:
                h = kernel(page, "print(view.scatter.widget.hovering)").strip()
                if h not in ("None", ""):
                    index = int(h)
                    break
                time.sleep(0.05)
            if index is None:
                continue
            row = kernel(page, f"print(view.frame['id'].iloc[{index}])").strip()
            page.wait_for_function(
                "(id) => window.__benchHover.cards.some(c => c.id === id)", arg=row, timeout=10_000
            )
            w = page.evaluate("() => window.__benchHover")
            card_ms.append(round(next(c["t"] for c in w["cards"] if c["id"] == row) - w["t0"], 1))
            hovered.append(index)
        assert len(card_ms) >= hovers // 2, f"only {len(card_ms)} of {hovers} hovers hit a point"
        out["hovered_points"] = len(card_ms)
        out["hover_to_card_ms"] = card_ms
        out["hover_to_card_median_ms"] = float(np.median(card_ms))
        shots = Path(__file__).resolve().parents[1] / "tests" / "artefacts"
        shots.mkdir(parents=True, exist_ok=True)
        page.locator(".bench-run-warm").screenshot(path=str(shots / "explorer_100k.png"))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows; points are twice this")
    parser.add_argument(
        "--browser", action="store_true", help="also time the canvas in JupyterLab + Chromium"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
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
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
