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
