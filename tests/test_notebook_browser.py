"""The quickstart notebook in a real browser: JupyterLab + headless Chromium (Debian's) driven by Playwright.

Checks in the DOM what a user sees: the train panel's progress and curves, the explorer's canvas, Stop ending a
running job, a selection set from Python filling the grid, a lasso selection reaching Python, a text search
highlighting hits. Screenshots go to tests/artefacts/ (look at them); figures to tests/artefacts/browser.json.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import playwright.sync_api as playwright
import pytest
from notebook_browser import CHROMIUM, jupyterlab

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = ROOT / "tests" / "artefacts"

KERNEL_JS = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code});
  let out = '';
  future.onIOPub = (m) => {
    const t = m.header.msg_type;
    if (t === 'execute_result') out += m.content.data['text/plain'];
    if (t === 'stream') out += m.content.text;
    if (t === 'error') out += 'ERROR ' + m.content.ename + ': ' + m.content.evalue;
  };
  await future.done;
  return out;
}"""


def kernel(page, code: str) -> str:
    """Run code in the notebook's kernel (not in a cell) and return what it printed or returned."""
    return page.evaluate(KERNEL_JS, code)


def state_of(panel) -> tuple[str | None, int]:
    """(data-state, step) shown by a train panel's progress line."""
    text = panel.locator(".mmpt-progress-text")
    if text.count() == 0:
        return None, -1
    step = panel.locator(".mmpt-step").inner_text() if panel.locator(".mmpt-step").count() else "-"
    return text.get_attribute("data-state"), int(step) if step.isdigit() else -1


def wait_for(predicate, timeout: float, what: str, poll: float = 0.25):
    """Poll `predicate()` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_in_jupyterlab(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / "01_quickstart.ipynb", root)
    ARTEFACTS.mkdir(exist_ok=True)
    figures: dict[str, float] = {}
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with jupyterlab(root, tmp_path / "home", env) as url, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--autoplay-policy=no-user-gesture-required"]
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(url.format(path="01_quickstart.ipynb"))
            page.get_by_text("| Idle").first.wait_for(timeout=120_000)
            t0 = time.monotonic()
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

            # 1. the first train panel: progress mid-run, then finished with curves
            quick = page.locator(".mmpt-train-panel").first
            quick.wait_for(timeout=120_000)
            wait_for(lambda: state_of(quick)[1] >= 2, 240, "the first job's progress")
            quick.scroll_into_view_if_needed()
            quick.screenshot(path=str(ARTEFACTS / "train_panel_first_job.png"))
            assert quick.locator("polyline.mmpt-curve").count() >= 1
            wait_for(lambda: state_of(quick)[0] == "finished", 300, "the first job to finish")
            assert state_of(quick)[1] == 20
            names = {
                quick.locator("polyline.mmpt-curve").nth(i).get_attribute("data-name")
                for i in range(quick.locator("polyline.mmpt-curve").count())
            }
            assert {"image_text", "audio_text"} <= names, names

            # 2. the explorer: canvas drawn, Python-set selection in the grid
            explorer = page.locator(".mmpt-explorer-panel")
            explorer.wait_for(timeout=240_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.mmpt-scatter canvas')]"
                ".some(c => c.width > 100 && c.height > 100)",
                timeout=60_000,
            )
            explorer.locator(".mmpt-scatter").scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            box = wait_for(
                lambda: page.evaluate(
                    "() => { const cs = [...document.querySelectorAll('.mmpt-scatter canvas')]"
                    ".filter(c => c.width > 100 && c.height > 100);"
                    " if (!cs.length) return null; const r = cs[0].getBoundingClientRect();"
                    " return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
                ),
                30,
                "a sized scatter canvas",
            )
            figures["explorer_canvas_after_run_all_s"] = round(time.monotonic() - t0, 2)
            wait_for(
                lambda: kernel(page, "print('longer' in globals())").strip() == "True",
                180,
                "the cells after the explorer",
            )

            ids = json.loads(
                kernel(page, "import json; print(json.dumps(list(explorer.points()['id'][40:43])))")
            )
            started = time.monotonic()
            kernel(page, f"view.selection({ids!r})")
            grid = explorer.locator(".mmpt-selection-items")
            wait_for(
                lambda: (
                    {
                        grid.locator(".mmpt-card").nth(i).get_attribute("data-id")
                        for i in range(grid.locator(".mmpt-card").count())
                    }
                    == set(ids)
                ),
                20,
                "the Python selection in the grid",
            )
            figures["python_selection_to_grid_s"] = round(time.monotonic() - started, 3)
            assert grid.locator("img.mmpt-thumb").count() >= 1
            assert grid.locator("audio.mmpt-audio").count() >= 1

            # 4. a text search typed in the box highlights its hits
            started = time.monotonic()
            search = explorer.locator(".mmpt-search input")
            search.fill("a blue star")
            search.press("Enter")
            wait_for(
                lambda: "a blue star" in explorer.locator(".mmpt-explorer-status").inner_text(),
                60,
                "the search status",
            )
            figures["search_round_trip_s"] = round(time.monotonic() - started, 3)
            wait_for(lambda: grid.locator(".mmpt-score").count() >= 1, 10, "scored hits in the grid")
            hits = json.loads(kernel(page, "print(json.dumps(sorted(set(view.search()['id']))))"))
            assert (
                sorted(
                    kernel(page, "print(json.dumps(list(view.selection())))")
                    and json.loads(kernel(page, "print(json.dumps(list(view.selection())))"))
                )
                == hits
            )
            highlighted = int(kernel(page, "print(len(view.scatter.widget.selection))"))
            assert highlighted >= len(hits)
            explorer.screenshot(path=str(ARTEFACTS / "explorer_search.png"))

            # 6. the second job trains while cells run; Stop ends it
            longer = page.locator(".mmpt-train-panel").nth(1)
            longer.wait_for(timeout=60_000)
            wait_for(
                lambda: state_of(longer)[0] == "running" and state_of(longer)[1] >= 2,
                240,
                "the second job's progress",
            )
            started = time.monotonic()
            kernel(page, "1 + 1")
            figures["cell_while_training_s"] = round(time.monotonic() - started, 3)
            longer.scroll_into_view_if_needed()
            longer.screenshot(path=str(ARTEFACTS / "train_panel_running.png"))
            started = time.monotonic()
            longer.locator(".mmpt-stop button, button.mmpt-stop").first.click()
            wait_for(lambda: state_of(longer)[0] == "stopped", 90, "Stop to end the job")
            figures["stop_click_to_stopped_s"] = round(time.monotonic() - started, 2)
            assert kernel(page, "print(longer.job.is_alive())").strip() == "False"
            assert "stopped" in kernel(page, "print(longer.job.status()['state'])")
            overhead = float(kernel(page, "print(longer.overhead)"))
            figures["train_panel_cpu_fraction"] = round(overhead, 4)
            assert overhead < 0.05
            longer.screenshot(path=str(ARTEFACTS / "train_panel_stopped.png"))
            explorer.locator(".mmpt-scatter").scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            box = page.evaluate(
                "() => { const c = [...document.querySelectorAll('.mmpt-scatter canvas')]"
                ".find(c => c.width > 100 && c.height > 100); const r = c.getBoundingClientRect();"
                " return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
            )
            # 5. hover: the card fills with the point's thumbnail; time it
            hover_card = explorer.locator(".mmpt-hover-card")
            ndc = json.loads(
                kernel(
                    page,
                    "import json; p = view.scatter.widget.points; "
                    "print(json.dumps([[float(v) for v in r[:2]] for r in p[::7]]))",
                )
            )
            found = None
            for (
                nx,
                ny,
            ) in ndc:  # jscatter keeps points in [-1, 1]; the default camera shows exactly that square
                fx, fy = (nx + 1) / 2, (1 - ny) / 2
                if not (0.02 < fx < 0.98 and 0.02 < fy < 0.98):
                    continue
                page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
                page.wait_for_timeout(60)
                if kernel(page, "print(view.scatter.widget.hovering)").strip() not in ("None", ""):
                    found = (fx, fy)
                    break
            assert found, "no point under the mouse at any point's computed pixel"
            page.mouse.move(box["x"] + 2, box["y"] + 2)
            page.wait_for_timeout(300)
            before = hover_card.get_attribute("data-id") if hover_card.count() else None
            started = time.monotonic()
            page.mouse.move(box["x"] + found[0] * box["width"], box["y"] + found[1] * box["height"])
            wait_for(
                lambda: (
                    hover_card.count() and (hover_card.get_attribute("data-id") != before or before is None)
                ),
                5,
                "the hover card",
                poll=0.01,
            )
            figures["hover_to_card_s"] = round(time.monotonic() - started, 3)
            tooltip_audio = explorer.locator(".mmpt-scatter audio")
            wait_for(
                lambda: (
                    tooltip_audio.count()
                    and (tooltip_audio.first.get_attribute("src") or "").startswith("data:audio/wav")
                ),
                5,
                "the tooltip's audio clip",
                poll=0.02,
            )
            figures["hover_to_tooltip_audio_s"] = round(time.monotonic() - started, 3)
            explorer.screenshot(path=str(ARTEFACTS / "explorer_hover.png"))

            # 3. a click on a point in the browser selects its row in Python and shows its neighbours
            page.mouse.click(box["x"] + found[0] * box["width"], box["y"] + found[1] * box["height"])
            clicked = wait_for(
                lambda: json.loads(kernel(page, "print(json.dumps(list(view.selection())))")),
                20,
                "the clicked point's row in Python",
            )
            assert len(clicked) == 1
            neighbours = explorer.locator(".mmpt-neighbour-items .mmpt-card")
            wait_for(lambda: neighbours.count() >= 1, 20, "the clicked point's neighbours")
            explorer.screenshot(path=str(ARTEFACTS / "explorer_click_neighbours.png"))
            figures["clicked_neighbours"] = neighbours.count()
            explorer.get_by_text("selection", exact=True).click()

            page.screenshot(path=str(ARTEFACTS / "quickstart_page.png"))
        finally:
            page.screenshot(path=str(ARTEFACTS / "last_view.png"))
            if page.locator(".mmpt-explorer-panel").count():
                page.locator(".mmpt-explorer-panel").screenshot(path=str(ARTEFACTS / "last_explorer.png"))
            (ARTEFACTS / "browser.json").write_text(json.dumps(figures, indent=2))
            kernel_alive = root / "quickstart" / "runs" / "longer"
            if kernel_alive.exists():
                from mmpt.jobs import attach

                attach(kernel_alive).stop(timeout=20)
            browser.close()
