"""The app on a real X server (Xvfb) with a PulseAudio null sink: it starts, a clip plays to its end, and each
tab is screenshotted from the X root window into tests/artefacts/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gui_support import gui_data

HERE = Path(__file__).parent
ARTEFACTS = HERE / "artefacts"
NULL_PA = """load-module module-native-protocol-unix socket={socket} auth-anonymous=1
load-module module-null-sink sink_name=null sink_properties=device.description=null
set-default-sink null
"""


def free_display() -> int:
    """A display number with neither a lock file nor a socket."""
    for n in range(90, 200):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise RuntimeError("no free X display number in 90..199")


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear within {timeout:g} s")


def end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def display(tmp_path):
    """(DISPLAY, PULSE_SERVER) of an Xvfb server and a PulseAudio daemon with a null sink, both ours."""
    for tool in ("Xvfb", "pulseaudio", "import"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install xvfb xauth pulseaudio imagemagick"
    n = free_display()
    xvfb = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    home = tmp_path / "pulse-home"
    home.mkdir()
    socket = tmp_path / "pulse.sock"
    (tmp_path / "null.pa").write_text(NULL_PA.format(socket=socket))
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "PULSE_RUNTIME_PATH": str(home)}
    pulse = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "-F",
            str(tmp_path / "null.pa"),
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "pulse.log", "wb"),
    )  # noqa: SIM115
    try:
        wait_for(Path(f"/tmp/.X11-unix/X{n}"), xvfb)
        wait_for(socket, pulse)
        yield f":{n}", f"unix:{socket}"
    finally:
        end(pulse)
        end(xvfb)


def test_app_on_xvfb_plays_audio_and_screenshots_each_tab(display, tmp_path_factory) -> None:
    dataset, run = gui_data(tmp_path_factory.mktemp("gui-x"))
    ARTEFACTS.mkdir(exist_ok=True)
    x_display, pulse = display
    env = {
        **os.environ,
        "DISPLAY": x_display,
        "PULSE_SERVER": pulse,
        "QT_QPA_PLATFORM": "xcb",
        "QT_LOGGING_RULES": "qt.multimedia.*=false",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
    }
    settings = tmp_path_factory.mktemp("gui-x-settings") / "settings.ini"
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "gui_xvfb_app.py"),
            str(dataset),
            str(run),
            str(ARTEFACTS),
            str(settings),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, (
        proc.stdout[-3000:] + proc.stderr[-3000:]
    )  # 134 would be a QThread alive at exit
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert result["platform"] == "xcb"
    assert result["explorer"] and result["dataset"]
    assert result["audio_outputs"], "the PulseAudio null sink is not seen as an output"
    assert result["play_started"] and result["ended"], result
    for shot in result["shots"]:
        assert Path(shot).stat().st_size > 20_000  # a real picture, not a blank root window
