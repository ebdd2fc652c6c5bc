"""Helpers for real-browser notebook tests: a throwaway JupyterLab server and a headless Chromium driven by Playwright.

Everything Jupyter writes (config, data, runtime, settings, workspaces) goes to a temp folder, the server listens
on 127.0.0.1 with a random token, and the "Jupyter news" prompt is pre-answered (see FIELD-NOTES.md).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/lib/chromium/chromium"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyterlab(root: Path, home: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `jupyter lab` serving `root`; yields the base URL with `?token=` query; stops it (whole group) after."""
    port, token = free_port(), secrets.token_hex(16)
    dirs = {name: home / name for name in ("config", "data", "runtime", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    news = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True, exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    notebook = dirs["settings"] / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(
        parents=True, exist_ok=True
    )  # keep every cell in the DOM (JupyterLab 4 drops off-screen ones)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    full_env = {
        **os.environ,
        **(env or {}),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
    }
    # the venv's own kernel, whatever jupyter_data_dir says
    full_env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    log = (home / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--expose-app-in-browser",
            "--LabApp.news_url=",
            "--ServerApp.disable_check_xsrf=False",
        ],
        cwd=root,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start: {(home / 'jupyter.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"{base}/lab/tree/{{path}}?token={token}"
    finally:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, 9)
        log.close()


# --- driving a notebook and a jupyter-scatter canvas ------------------------------------------------------
# Start "Run All" and return at once: the command's promise resolves only when the last cell has run, so
# awaiting it (what `page.evaluate` does with a returned promise) would block the test until then.
RUN_ALL_JS = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
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

# Where jupyter-scatter drew each point, in page (client) pixels. jupyter-scatter keeps its regl-scatterplot
# instance on the canvas container as `.api`; `getScreenPosition` applies the camera and the canvas aspect
# ratio (x and y are normalised to [-1, 1] but shown in a square of the canvas height, so the naive
# `(x + 1) / 2 * width` is wrong). `hit` says whether the canvas is the topmost element at that pixel.
SCATTER_JS = """(selector) => {
  const host = [...document.querySelectorAll(selector + ' *')].find(e => e.api && e.api.getScreenPosition);
  if (!host) return null;
  const api = host.api;
  if (!api.get('isPointsDrawn')) return null;
  const canvas = api.get('canvas');
  const r = canvas.getBoundingClientRect();
  const n = api.get('points').length;
  const xy = [], hit = [];
  for (let i = 0; i < n; i++) {
    const [x, y] = api.getScreenPosition(i);
    xy.push([r.x + x, r.y + y]);
    hit.push(document.elementFromPoint(r.x + x, r.y + y) === canvas);
  }
  const legend = document.querySelector(selector + ' .legend');
  const lr = legend ? legend.getBoundingClientRect() : null;
  return {rect: [r.x, r.y, r.width, r.height], n, xy, hit,
          legend: lr ? [lr.x, lr.y, lr.width, lr.height] : null};
}"""


def kernel(page, code: str) -> str:
    """Run code in the current notebook's kernel (not in a cell); returns what it printed or returned."""
    return page.evaluate(KERNEL_JS, code)


def scatter_points(page, selector: str) -> dict | None:
    """Client-pixel positions of a drawn jupyter-scatter's points (see SCATTER_JS), or None before drawn."""
    return page.evaluate(SCATTER_JS, selector)


def drag_polygon(page, corners: list[tuple[float, float]], per_edge: int = 12, pause_ms: int = 12) -> None:
    """Press, trace the polygon `corners` with small mouse moves, release (a lasso gesture).

    regl-scatterplot samples the lasso at most every 8 ms and 2 px, so the moves are paced; it closes the
    polygon itself. The release stops short of the start: a release where the press was counts as a click,
    which would select the point under it instead."""
    x0, y0 = corners[0]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for e, ((ax, ay), (bx, by)) in enumerate(zip(corners, [*corners[1:], corners[0]], strict=True)):
        last = e == len(corners) - 1
        for k in range(1, per_edge + (0 if last else 1)):
            page.mouse.move(ax + (bx - ax) * k / per_edge, ay + (by - ay) * k / per_edge)
            page.wait_for_timeout(pause_ms)
    page.mouse.up()


def lasso_box(
    xy: list[list[float]],
    usable: list[bool],
    rect: list[float],
    keys: list[str],
    sizes: tuple[float, ...] = (30, 45, 60, 80),
    margin: float = 2.0,
    want: tuple[int, int] = (4, 40),
) -> tuple[tuple[float, float, float, float], set[str]] | None:
    """A box (x0, y0, x1, y1) in whole pixels, on the canvas, around a group of points, chosen so that the set of
    `keys` (row ids) of the points inside does not change when the box grows or shrinks by `margin` px (what is
    selected then does not hang on sub-pixel lasso sampling); and that set of keys."""
    rx, ry, rw, rh = rect
    order = sorted(
        range(len(xy)), key=lambda i: (xy[i][0] - rx - rw / 2) ** 2 + (xy[i][1] - ry - rh / 2) ** 2
    )

    def inside(box: tuple[float, float, float, float], grow: float) -> list[int]:
        x0, y0, x1, y1 = box
        return [i for i, (x, y) in enumerate(xy) if x0 - grow < x < x1 + grow and y0 - grow < y < y1 + grow]

    for centre in order[::5]:
        cx, cy = xy[centre]
        for half in sizes:
            box = (round(cx - half), round(cy - half * 0.8), round(cx + half), round(cy + half * 0.8))
            if not (rx + 8 < box[0] and box[2] < rx + rw - 8 and ry + 8 < box[1] and box[3] < ry + rh - 8):
                continue
            core, wide = inside(box, -margin), inside(box, margin)
            rows = {keys[i] for i in core}
            if (
                rows == {keys[i] for i in wide}
                and want[0] <= len(rows) <= want[1]
                and all(usable[i] for i in wide)
            ):
                return box, rows
    return None
