"""Desktop app pieces without a dataset: geometry, the worker helper, scatter view, audio player, errors, settings."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.*=false")

from gui import audio as audio_module  # noqa: E402
from gui.audio import NO_DEVICE, AudioPlayer  # noqa: E402
from gui.errors import close_dialogs, open_dialogs, show_error  # noqa: E402
from gui.geometry import HoverIndex, density_rgba, points_in_polygon, points_in_rect  # noqa: E402
from gui.scatter import DENSITY_THRESHOLD, ScatterView  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.workers import live_workers, shutdown_workers, start_worker  # noqa: E402


@pytest.fixture(autouse=True)
def _no_threads_left():
    yield
    shutdown_workers()
    close_dialogs()


def brute_inside(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, one point at a time (the reference)."""
    out = np.zeros(len(x), bool)
    for i, (px, py) in enumerate(zip(x, y, strict=True)):
        inside = False
        for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
                inside = not inside
        out[i] = inside
    return out


def test_point_in_polygon_matches_reference() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-2, 2, 3000), rng.uniform(-2, 2, 3000)
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    star = np.c_[np.cos(t) * (1 + 0.5 * np.sin(5 * t)), np.sin(t) * (1 + 0.5 * np.sin(5 * t))]
    assert np.array_equal(points_in_polygon(x, y, star), brute_inside(x, y, star))
    assert points_in_polygon(x, y, star[:2]).sum() == 0
    assert np.array_equal(points_in_rect(x, y, 1, 1, -1, -1), (np.abs(x) <= 1) & (np.abs(y) <= 1))


def test_density_image_counts_and_colours() -> None:
    x = np.array([0.1, 0.1, 0.9])
    y = np.array([0.1, 0.1, 0.9])
    rgba = density_rgba(
        x, y, np.array([0, 0, 1]), np.array([[255, 0, 0], [0, 0, 255]], float), (0, 0, 1, 1), (2, 2)
    )
    assert rgba.shape == (2, 2, 4)
    assert tuple(rgba[0, 0, :3]) == (255, 0, 0) and tuple(rgba[1, 1, :3]) == (0, 0, 255)
    assert rgba[0, 0, 3] > rgba[1, 1, 3] > 0 and rgba[0, 1, 3] == 0


def test_hover_index_respects_screen_radius() -> None:
    index = HoverIndex(np.array([0.0, 10.0]), np.array([0.0, 1.0]))
    assert index.nearest(0.05, 0.0, 0.1, 0.01) == 0
    assert index.nearest(0.5, 0.0, 0.1, 0.01) == -1  # 5 radii away in x
    assert index.nearest(9.95, 1.0, 0.1, 0.01) == 1


def test_worker_throttles_progress_and_returns(qtbot) -> None:
    got: list[int] = []

    def count():
        yield from range(200_000)
        return "done"

    started = time.monotonic()
    worker = start_worker(count, on_progress=got.append)
    with qtbot.waitSignal(worker.returned, timeout=30_000) as blocker:
        pass
    worker.wait()
    elapsed = time.monotonic() - started
    qtbot.waitUntil(lambda: got and got[-1] == 199_999, timeout=5000)
    assert blocker.args == ["done"]
    assert worker.emitted <= 50 * elapsed + 2  # <= 50 signals a second, plus the first and the last
    assert not live_workers()


def test_worker_error_and_stop(qtbot) -> None:
    def broken():
        raise ValueError("the reason\nmore lines")

    worker = start_worker(broken)
    with qtbot.waitSignal(worker.errored, timeout=10_000) as blocker:
        pass
    assert blocker.args[0] == "the reason" and "Traceback" in blocker.args[1]

    def forever():
        while True:
            yield 1
            time.sleep(0.01)

    worker = start_worker(forever)
    with qtbot.waitSignal(worker.stopped, timeout=10_000):
        worker.stop()
    assert worker.wait(5000)


def test_error_dialog_has_reason_and_details(qtbot) -> None:
    box = show_error(None, "dataset not found: x.lance", "Traceback ...")
    assert box in open_dialogs() and box.text() == "dataset not found: x.lance"
    assert box.detailedText() == "Traceback ..."
    assert show_error(None, "dataset not found: x.lance") is box  # the same reason is not stacked
    close_dialogs()
    assert not open_dialogs()


def test_settings_persist(tmp_path) -> None:
    path = tmp_path / "s.ini"
    settings = Settings(path)
    for name in ("a", "b", "a"):
        settings.add_recent("datasets", name)
    settings.set("train/device", "cpu")
    settings.sync()
    again = Settings(path)
    assert again.recent("datasets") == ["a", "b"]
    assert again.get("train/device") == "cpu"


def test_scatter_hover_click_lasso_and_density(qtbot) -> None:
    view = ScatterView()
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    rng = np.random.default_rng(1)
    n = 5000
    x, y, codes = rng.normal(size=n), rng.normal(size=n), rng.integers(0, 3, n)
    view.set_points(x, y, codes, ["#e69f00", "#56b4e9", "#009e73"], ["a", "b", "c"])
    assert not view.density and len(view._items) == 3
    with qtbot.waitSignal(view.hovered) as hovered:
        view.hover_at(x[17], y[17])
    assert hovered.args == [17] or np.hypot(x[hovered.args[0]] - x[17], y[hovered.args[0]] - y[17]) < 0.05
    with qtbot.waitSignal(view.selectionChanged) as selected:
        view.select_shape("lasso", np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]))
    expected = np.flatnonzero((np.abs(x) <= 1) & (np.abs(y) <= 1))
    assert np.array_equal(selected.args[0], expected) and np.array_equal(view.selection, expected)
    view.set_mode("lasso")
    assert view.box.mode == "lasso"
    big = DENSITY_THRESHOLD + 1000
    bx, by = rng.normal(size=big), rng.normal(size=big)
    view.set_points(bx, by, rng.integers(0, 3, big), ["#e69f00", "#56b4e9", "#009e73"])
    assert view.density and view.image.isVisible() and view.image.image is not None
    view.box.setRange(xRange=(0, 0.05), yRange=(0, 0.05), padding=0)
    view._update_density()
    assert view._items  # zoomed in: the few points in view are drawn as points


def test_audio_player_says_when_there_is_no_device(qtbot, monkeypatch) -> None:
    monkeypatch.setattr(audio_module, "has_audio_output", lambda: False)
    player = AudioPlayer()
    qtbot.addWidget(player)
    player.set_clip(b"RIFF0000WAVEfmt ")
    assert not player.play()
    assert player.label.text() == NO_DEVICE and not player.button.isEnabled()
