"""Run by test_gui_xvfb.py on a real X display: open the app on a dataset and a run, play a clip to its end,
screenshot the X root window on each tab, print one JSON line with what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def main(dataset: str, run: str, out_dir: str, settings: str) -> int:
    from gui.app import create_app

    started = time.perf_counter()
    app = create_app()
    from gui_support import wait_until
    from PySide6.QtMultimedia import QMediaDevices

    from gui.main_window import MainWindow
    from gui.settings import Settings
    from gui.workers import shutdown_workers

    window = MainWindow(Settings(settings), dataset=dataset, run=run)
    window.close_choice = "leave"
    window.setGeometry(0, 0, 1400, 900)
    window.show()
    wait_until(app, window.isVisible, 10)
    shown = time.perf_counter() - started
    result: dict = {
        "platform": app.platformName(),
        "shown_s": round(shown, 3),
        "shots": [],
        "audio_outputs": [d.description() for d in QMediaDevices.audioOutputs()],
    }
    explore = window.explore_tab
    result["explorer"] = wait_until(app, lambda: explore.explorer is not None, 300)
    result["dataset"] = wait_until(app, lambda: window.data_tab.dataset is not None, 60)
    window.data_tab.grid.setCurrentIndex(window.data_tab.grid.model().index(2))
    wait_until(app, lambda: not window.data_tab.grid.samples.loading(), 30)
    wait_until(app, lambda: window.train_tab.curves.points("loss") > 0, 30)

    # hover an audio point, as a user would, and play its clip to the end on the null sink
    frame = explore.frame
    audio = frame.index[frame["modality"] == "audio"][0]
    explore.scatter.hover_at(frame["x"][audio], frame["y"][audio])
    wait_until(app, lambda: explore.card.item is not None and explore.card.item.audio_wav is not None, 5)
    player = explore.card.player
    ended: list[float] = []
    player.ended.connect(lambda: ended.append(time.perf_counter()))
    t0 = time.perf_counter()
    result["play_started"] = player.play()
    result["ended"] = wait_until(app, lambda: bool(ended), 20)
    result["play_s"] = round(ended[0] - t0, 3) if ended else None
    result["audio_label"] = player.label.text()
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    explore.scatter.select_shape("rect", [[x.min() - 1, y.min() - 1], [x.mean(), y.mean()]])
    explore.k.setValue(8)
    explore.search("a red circle")
    wait_until(app, lambda: explore.search_worker is None and explore.hits.count() > 0, 120)
    wait_until(app, lambda: not explore.grid.samples.loading(), 30)
    for index, name in enumerate(("data", "train", "explore", "export")):
        window.tabs.setCurrentIndex(index)
        wait_until(app, lambda: False, 0.3)
        wait_until(
            app, lambda: not window.data_tab.grid.samples.loading() and not explore.grid.samples.loading(), 30
        )
        wait_until(app, lambda: False, 0.3)
        path = Path(out_dir) / f"gui-{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=30)
        result["shots"].append(str(path))
    window.close()
    shutdown_workers()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
