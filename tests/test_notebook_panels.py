"""The notebook panels without a browser: change the headless model or the widget, check the other's traits."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mmpt.notebook.curves import Curves
from mmpt.notebook.poller import Poller
from mmpt.notebook.svg import line_chart, nice_ticks, thin


# --- small parts ------------------------------------------------------------------------------------
def test_poller_bounded_rate_and_stop() -> None:
    with pytest.raises(ValueError):
        Poller(lambda: None, hz=20)
    calls: list[str] = []
    poller = Poller(lambda: calls.append(threading.current_thread().name), hz=10).start()
    time.sleep(0.55)
    poller.stop()
    assert 3 <= len(calls) <= 7  # ~10 Hz, never faster
    assert set(calls) == {"mmpt-poller"}
    assert not poller.running and poller.cpu_fraction < 0.5


def test_poller_ends_when_tick_says_so_and_keeps_errors() -> None:
    ticks = iter([True, RuntimeError("boom"), False])

    def tick() -> bool:
        value = next(ticks)
        if isinstance(value, Exception):
            raise value
        return value

    poller = Poller(tick, hz=10).start()
    time.sleep(0.5)
    assert not poller.running and poller.ticks == 3
    assert "boom" in poller.error


def test_chart_svg() -> None:
    assert "waiting for data" in line_chart({})
    svg = line_chart(
        {"image_text": [(i, 5 - i / 100) for i in range(1000)], "audio_text": [(0, 1.0)]},
        dashed=["audio_text"],
    )
    assert svg.count('class="mmpt-curve"') == 2 and 'data-name="image_text"' in svg
    counts = [int(n) for n in re.findall(r'data-n="(\d+)"', svg)]
    assert 300 <= counts[0] <= 400 and counts[1] == 1  # thinned to at most MAX_POINTS
    assert "stroke-dasharray" in svg
    assert thin([(i, i) for i in range(10)], 3)[-1] == (9.0, 9.0)
    assert nice_ticks(0, 1, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_curves_from_events() -> None:
    curves = Curves()
    curves.feed(
        [
            {"kind": "start", "step": 0},
            {"kind": "train", "step": 2, "loss": 3.0, "loss/image_text": 1.5},
            {"kind": "val", "step": 2, "val_loss/image_text": 1.2, "val_loss": 1.2},
        ]
    )
    assert curves.train == {"image_text": [(2, 1.5)]} and curves.val["image_text"] == [(2, 1.2)]
    version = curves.version
    curves.feed([{"kind": "reset"}])
    assert curves.train == {} and curves.version > version


# --- DatasetPanel -------------------------------------------------------------------------------------
def test_dataset_panel_filters_pages_and_cards(demo_dataset) -> None:
    from mmpt.notebook.dataset import DatasetPanel

    panel = DatasetPanel(demo_dataset, page_size=6)
    assert "300" in panel.info.value and "modalities" in panel.info.value
    assert panel.grid_w.value.count('class="mmpt-card ') == 6
    assert "<img" in panel.grid_w.value and "<audio" in panel.grid_w.value
    assert panel.page_w.value.startswith("page 1 of 50")
    panel.page(3)
    assert panel.page() == 3 and panel.page_w.value.startswith("page 4 of 50")
    panel.next_w.click()
    assert panel.page() == 4
    panel.filter(split="val", modality="audio")
    rows = panel.browser.frame.iloc[panel.positions()]
    assert len(rows) and (rows["split"] == "val").all() and rows["audio"].all()
    assert panel.page() == 0 and panel.filter()["split"] == "val"
    panel.label_w.value = panel.label_w.options[1]  # a widget change refilters too
    assert (panel.browser.frame.iloc[panel.positions()]["label"] == panel.label_w.options[1]).all()
    panel.filter(split="(any)", label="(any)", modality="(any)", text="nothing matches this")
    assert "no rows match" in panel.grid_w.value and panel.next_w.disabled


def test_dataset_panel_shows_bad_rows(demo_files: Path, tmp_path: Path) -> None:
    import mmpt
    from mmpt.notebook.dataset import DatasetPanel

    files = tmp_path / "files"
    shutil.copytree(demo_files.parent, files)
    (files / "images" / "demo-000002.png").write_bytes(b"broken")
    mmpt.ingest(files / "manifest.csv", out=tmp_path / "c.lance", quiet=True)
    panel = DatasetPanel(tmp_path / "c.lance")
    assert "mmpt-bad-rows" in panel.report_w.value and "demo-000002" in panel.report_w.value
    assert "rejected 1" in panel.report_w.value


# --- ExplorerPanel ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def explorer(demo_dataset, tiny_run, tmp_path_factory):
    from mmpt.explore.session import Explorer
    from mmpt.store.dataset import open_dataset

    copy = tmp_path_factory.mktemp("explore") / "demo.lance"
    shutil.copytree(demo_dataset.uri, copy)  # embedding columns go into this copy, not the shared dataset
    return Explorer(open_dataset(copy), tiny_run, embed=True, progress=False)


@pytest.fixture
def panel(explorer):
    from mmpt.notebook.explorer import ExplorerPanel

    explorer.select([])
    view = ExplorerPanel(explorer)
    sent: list[dict] = []
    view.scatter.widget.send = lambda msg, buffers=None: sent.append(msg)
    view.sent = sent
    yield view
    view.close()


def test_explorer_selection_from_python_reaches_widget_and_grid(panel, explorer) -> None:
    ids = list(explorer.points()["id"][:3])
    panel.selection(ids)
    assert set(panel.selection()) == set(ids)
    points = np.sort(panel.scatter.widget.selection)
    assert np.array_equal(points, explorer.selection_points())  # every point of those rows lights up
    assert len(points) >= len(ids)
    for i in ids:
        assert f'data-id="{i}"' in panel.grid_w.value
    assert "3 selected" in panel.grid_w.value
    panel.selection([])
    assert len(panel.scatter.widget.selection) == 0 and "nothing selected" in panel.grid_w.value


def test_explorer_lasso_in_widget_reaches_python(panel, explorer) -> None:
    frame = explorer.points()
    panel.scatter.widget.selection = np.array([5, 6, 7])
    assert set(panel.selection()) == set(frame["id"][[5, 6, 7]])
    assert set(panel.explorer.selected_frame()["id"]) == set(frame["id"][[5, 6, 7]])


def test_explorer_click_shows_neighbours(panel, explorer) -> None:
    frame = explorer.points()
    panel.scatter.widget.selection = np.array([12])
    assert panel.selection() == (frame["id"][12],)
    assert panel.neighbour_frame is not None and len(panel.neighbour_frame) == panel.k
    assert panel.neighbours_w.value.count('class="mmpt-card ') == panel.k and panel.tabs.selected_index == 1
    panel.select_neighbours_w.click()
    assert set(panel.selection()) == set(panel.neighbour_frame["id"])


def test_explorer_tooltip_preview_is_made_on_demand(panel, explorer) -> None:
    frame = explorer.points()
    assert "preview" not in frame.columns and not any(
        str(v).startswith("data:") for v in panel.scatter.widget.data.iloc[0]
    )  # nothing encoded up front
    index = int(np.flatnonzero(frame["modality"] == "audio")[0])
    panel.scatter.widget._handle_custom_msg(
        {"type": "tooltip", "index": index, "properties": ["label", "modality"], "preview": "id"}, []
    )
    msg = panel.sent[-1]
    assert msg["index"] == index and msg["properties"]["modality"] == "audio"
    # the demo rows have images and sound: the clip plays from the hover card, the tooltip shows the image
    assert panel.hover_type == "audio" and panel.tooltip_type == "image"
    assert msg["preview"].startswith("data:image/png;base64,") and len(msg["preview"]) > 200


def test_explorer_hover_card(panel, explorer) -> None:
    frame = explorer.points()
    images = np.flatnonzero(frame["modality"] == "image")
    index = int(next(i for i in images if explorer.item(frame["id"][i]).audio_uri()))  # a row with a clip
    panel.scatter.widget.hovering = index
    assert (
        "mmpt-hover-card" in panel.hover_w.value and f'data-id="{frame["id"][index]}"' in panel.hover_w.value
    )
    assert "mmpt-thumb" in panel.hover_w.value
    # the card plays the row's clip as it appears (and only the hover card: grid cards wait for a click)
    assert 'class="mmpt-audio" controls autoplay src="data:audio/wav;base64,' in panel.hover_w.value
    panel.selection([frame["id"][index]])
    assert "autoplay" not in panel.grid_w.value and 'preload="none"' in panel.grid_w.value


def test_explorer_search_highlights_hits(panel) -> None:
    panel.query_w.value = "a red circle"  # what pressing Enter in the box does
    hits = panel.search()
    assert hits is not None and len(hits) == 10
    assert set(panel.selection()) == set(hits["id"])
    assert "a red circle" in panel.status_w.value and "10 hits" in panel.status_w.value
    assert panel.grid_w.value.count('class="mmpt-score"') >= 1
    panel.search("")  # an empty query is reported, not raised
    assert "search failed" in panel.status_w.value


def test_explorer_colour_link_layout_export(panel, explorer, tmp_path: Path) -> None:
    panel.color_by("split")
    assert panel.scatter.color()["by"] == "split" and panel.colour_w.value == "split"
    panel.colour_w.value = "modality"
    assert panel.scatter.color()["by"] == "modality"
    panel.link_w.value = True
    assert panel.scatter.widget.connect is True and panel.link() is True
    panel.link(False)
    assert panel.scatter.widget.connect is False
    panel.layout("pca")
    assert panel.layout() == "pca"
    panel.selection(list(explorer.points()["id"][:4]))
    panel.path_w.value = str(tmp_path / "sel.csv")
    panel.format_w.value = "csv"
    panel.export_w.click()
    assert (tmp_path / "sel.csv").is_file() and "exported 4 rows" in panel.status_w.value


# --- TrainPanel -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_panel_start_follow_stop_reattach_resume(demo_dataset, tmp_path: Path, monkeypatch) -> None:
    from mmpt.notebook.train import TrainPanel

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = tmp_path / "runs" / "r"
    panel = TrainPanel(
        demo_dataset,
        run=run,
        model="tiny",
        max_steps=5000,
        batch_size=16,
        device="cpu",
        overrides=["train.log_every=1", "train.warmup_steps=2", "train.eval_after=false"],
        hz=10,
    )
    assert panel.config()["max_steps"] == 5000 and panel.stop_w.disabled
    panel.start()
    assert panel.start_w.disabled and not panel.stop_w.disabled
    deadline = time.monotonic() + 180
    while (panel.progress().get("step") or 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(0.6)  # one more chart redraw
    assert (panel.progress()["step"] or 0) >= 3
    assert "data-state='running'" in panel.progress_w.value and "samples/s" in panel.progress_w.value
    assert 'class="mmpt-curve"' in panel.chart_w.value and panel.bar_w.value > 0
    assert panel.overhead < 0.05

    panel.stop_w.click()  # stops in a background thread; the kernel stays free
    deadline = time.monotonic() + 90
    while panel.state() != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert panel.state() == "stopped" and not panel.job.is_alive()
    assert not panel.resume_w.disabled and not panel.start_w.disabled
    assert panel.job.rundir.latest_checkpoint() is not None
    stopped_at = panel.progress()["step"]
    panel.close()

    again = TrainPanel(run)  # re-created (a kernel restart): attaches and shows the same state
    assert again.state() == "stopped" and again.job is not None
    assert f"<span class='mmpt-step'>{stopped_at}</span>" in again.progress_w.value
    assert 'class="mmpt-curve"' in again.chart_w.value
    assert any(str(run) == value for _, value in again.runs_w.options)
    again.overlay([str(run)])
    assert again.chart_w.value.count("stroke-dasharray") >= 1
    again.resume()
    deadline = time.monotonic() + 120
    while (again.progress().get("step") or 0) <= stopped_at and time.monotonic() < deadline:
        time.sleep(0.5)
    assert again.progress()["step"] > stopped_at
    again.stop()
    assert again.state() == "stopped"
    again.close()
