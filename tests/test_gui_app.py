"""The desktop app on real mmpt objects (offscreen Qt): dataset, ingest, a training job, re-attach, explore, export."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.*=false")

from gui_support import gui_data, pid_gone, wait_until  # noqa: E402

from gui.errors import close_dialogs, open_dialogs  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.workers import shutdown_workers  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, run) shared by the tests of this module."""
    return gui_data(tmp_path_factory.mktemp("gui"))


@pytest.fixture
def window_factory(qtbot, tmp_path):
    """Make main windows sharing one settings file; all closed, their threads awaited, at the end."""
    windows: list[MainWindow] = []
    settings_path = tmp_path / "settings.ini"

    def make(**kwargs) -> MainWindow:
        window = MainWindow(Settings(settings_path), **kwargs)
        window.close_choice = "leave"
        qtbot.addWidget(window)
        window.resize(1300, 850)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.train_tab.close_monitor()
        window.close()
    shutdown_workers()
    close_dialogs()


def test_open_demo_dataset_filters_and_shows_a_row(qapp, window_factory, data) -> None:
    dataset, _ = data
    window = window_factory(dataset=str(dataset), reattach=False)
    tab = window.data_tab
    assert wait_until(qapp, lambda: tab.dataset is not None, 60)
    assert "120 rows" in tab.info.toPlainText() and "Modalities" in tab.info.toPlainText()
    assert tab.grid.count() == 120
    tab.split.setCurrentText("val")
    assert 0 < tab.grid.count() < 120
    assert set(tab.browser.rows(tab.positions())["split"]) == {"val"}
    assert tab.count.text() == f"{tab.grid.count()} of 120 rows"
    tab.split.setCurrentText("any")
    tab.modality.setCurrentText("audio")
    assert tab.browser.rows(tab.positions())["audio"].all()
    tab.text.setText("circle")
    shown = tab.browser.rows(tab.positions())
    assert len(shown) == tab.grid.count() > 0 and all("circle" in t for t in shown["text"])
    tab.grid.setCurrentIndex(tab.grid.model().index(0))
    assert tab.card.item is not None and tab.card.item.id == shown["id"].iloc[0]
    assert wait_until(qapp, lambda: not tab.grid.samples.loading(), 30)
    assert tab.grid.samples.error is None and len(tab.grid.samples._thumbs) >= min(60, tab.grid.count())
    assert window.train_tab.form.data.text() == str(dataset)  # the other tabs follow the opened dataset
    assert window.explore_tab.dataset.text() == str(dataset)


def test_bad_dataset_shows_one_line_error(qapp, window_factory, tmp_path) -> None:
    window = window_factory(reattach=False)
    window.data_tab.open(str(tmp_path / "missing.lance"))
    assert wait_until(qapp, lambda: bool(open_dialogs()), 30)
    box = open_dialogs()[0]
    assert box.text().startswith("dataset not found") and "\n" not in box.text()
    assert "Traceback" in box.detailedText()


def test_ingest_wizard_writes_a_dataset_and_lists_bad_rows(qapp, window_factory, tmp_path) -> None:
    from mmpt.store.synthetic import write_demo_files

    manifest = write_demo_files(tmp_path / "files", n_rows=12, seed=0)
    broken = pd.read_csv(manifest)
    image = broken["image"].dropna().iloc[0]
    (manifest.parent / image).write_bytes(b"not an image")
    window = window_factory(reattach=False)
    dialog = window.data_tab.show_ingest()
    dialog.source.setText(str(manifest))
    dialog.out.setText(str(tmp_path / "made.lance"))
    dialog.start()
    assert wait_until(qapp, lambda: dialog.result is not None or bool(open_dialogs()), 120)
    assert dialog.result is not None, [b.text() for b in open_dialogs()]
    assert dialog.result.written == 11 and len(dialog.result.rejected) == 1
    assert image.split("/")[-1] in dialog.report.toPlainText()
    assert wait_until(qapp, lambda: window.data_tab.dataset is not None, 30)
    assert str(window.data_tab.dataset.uri) == str(tmp_path / "made.lance")
    assert "rejected 1" in window.data_tab.info.toPlainText()  # the last ingest's report, bad row listed
    assert image.split("/")[-1] in window.data_tab.info.toPlainText()
    dialog.close()


def test_train_metrics_arrive_reattach_and_stop(qapp, window_factory, data, tmp_path) -> None:
    dataset, _ = data
    run = tmp_path / "runs" / "live"
    first = window_factory(reattach=False)
    tab = first.train_tab
    tab.form.set_values(
        kind="pretrain",
        run=str(run),
        data=str(dataset),
        model="tiny",
        epochs=0,
        max_steps=5000,
        batch=8,
        lr=1e-3,
        device="cpu",
        extra="train.log_every=1; train.val_every=0; train.ckpt_every=100000",
    )
    tab.start()
    assert wait_until(qapp, lambda: tab.monitor is not None or bool(open_dialogs()), 120), "job did not start"
    assert tab.monitor is not None, [b.text() for b in open_dialogs()]
    assert wait_until(qapp, lambda: tab.curves.points("loss") >= 2, 240), tab.log.toPlainText()
    assert tab.stop_button.isEnabled() and "step" in tab.bar.format()
    pid = tab.monitor.job.pid

    # a second window (as after an app restart) re-attaches to the running job and follows it
    tab.close_monitor()
    second = window_factory(reattach=True)
    follow = second.train_tab
    assert wait_until(qapp, lambda: follow.monitor is not None, 60)
    assert Path(follow.monitor.job.run) == run.absolute()
    seen = follow.curves.points("loss")
    assert wait_until(qapp, lambda: follow.curves.points("loss") > max(seen, 2), 120)
    assert "samples/s" in follow.figures.text()

    follow.stop()
    assert wait_until(qapp, lambda: follow.monitor.last_state.get("state") not in (None, "running"), 90)
    assert follow.monitor.last_state["state"] == "stopped"
    assert wait_until(qapp, lambda: pid_gone(pid), 15)
    assert follow.resume_button.isEnabled() and follow.checkpoints.count() >= 1


def test_explore_hover_lasso_search_export(qapp, window_factory, data, tmp_path) -> None:
    dataset, run = data
    window = window_factory(reattach=False)
    window.explore(str(run), str(dataset))
    tab = window.explore_tab
    assert wait_until(qapp, lambda: tab.explorer is not None or bool(open_dialogs()), 300)
    assert tab.explorer is not None, [b.text() for b in open_dialogs()]
    frame = tab.frame
    assert len(frame) > 120 and set(frame["modality"]) == {"image", "text", "audio"}

    audio = int(np.flatnonzero(frame["modality"].to_numpy() == "audio")[3])
    assert tab.scatter.hover_at(frame["x"][audio], frame["y"][audio]) >= 0
    index = tab.scatter.hover_index
    assert wait_until(qapp, lambda: tab.card.item is not None, 5)
    assert tab.card.item.id == frame["id"][index] and tab.card.item.modality == frame["modality"][index]
    if frame["modality"][index] == "audio":
        assert tab.card.item.audio_wav and tab.card.item.spectrogram_png

    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    box = np.array(
        [
            [x.min() - 1, y.min() - 1],
            [np.median(x), y.min() - 1],
            [np.median(x), y.max() + 1],
            [x.min() - 1, y.max() + 1],
        ]
    )
    tab.scatter.set_mode("lasso")
    tab.scatter.select_shape("lasso", box)
    assert wait_until(qapp, lambda: tab.grid.count() > 0, 10)
    inside = set(frame["id"][x <= np.median(x)])
    assert set(tab.explorer.selection) == inside and tab.grid.count() == len(inside)
    assert wait_until(qapp, lambda: not tab.grid.samples.loading(), 30)

    tab.k.setValue(7)
    tab.search("a red circle")
    assert wait_until(qapp, lambda: tab.search_worker is None and tab.hits.count() > 0, 120)
    assert tab.hits.count() == 7 and len(tab.scatter._highlight_indices()) == 7

    tab.colour_by.setCurrentText("modality")
    assert len(tab.scatter.colours) >= 3

    out = tab.export(str(tmp_path / "picked.parquet"), "parquet")
    assert out and set(pd.read_parquet(out)["id"]) == inside


def test_export_tab_writes_embeddings_file(qapp, window_factory, data, tmp_path) -> None:
    dataset, run = data
    copy = tmp_path / "copy.lance"
    shutil.copytree(dataset, copy)
    window = window_factory(reattach=False)
    tab = window.export_tab
    tab.set_sources(run=str(run), data=str(copy))
    tab.path.setText(str(tmp_path / "emb.parquet"))
    tab.device.setCurrentText("cpu")
    tab.start()
    assert wait_until(qapp, lambda: tab.monitor is not None or bool(open_dialogs()), 120)
    assert tab.monitor is not None, [b.text() for b in open_dialogs()]
    assert wait_until(qapp, lambda: tab.start_button.isEnabled(), 300), tab.log.toPlainText()
    assert tab.state.text().startswith("done"), (tab.state.text(), tab.log.toPlainText())
    table = pd.read_parquet(tmp_path / "emb.parquet")
    assert len(table) > 0 and "id" in table
