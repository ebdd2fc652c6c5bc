"""mmpt.explore.RowBrowser on a real Lance demo dataset, and MmptDataset.ingest_report after a real ingest."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import mmpt
from mmpt.explore import RowBrowser
from mmpt.store.dataset import MmptDataset
from mmpt.store.synthetic import make_demo_dataset, write_demo_files

ROWS = 100


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> MmptDataset:
    return make_demo_dataset(tmp_path_factory.mktemp("browse") / "demo.lance", n_rows=ROWS, seed=0)


@pytest.fixture(scope="module")
def browser(dataset: MmptDataset) -> RowBrowser:
    return RowBrowser(dataset)


@pytest.fixture(scope="module")
def truth(dataset: MmptDataset) -> pd.DataFrame:
    """The same columns read independently of RowBrowser, to check its answers against."""
    cols = ["id", "text", "label", "split", "image_sha256", "audio_sha256"]
    return dataset.lance.to_table(columns=cols).to_pandas()


def expect(mask: pd.Series) -> list[int]:
    return list(np.flatnonzero(mask.to_numpy(dtype=bool)))


def test_frame_choices_and_counts(browser: RowBrowser, truth: pd.DataFrame) -> None:
    assert len(browser) == ROWS and browser.frame.index.name == "row"
    assert list(browser.frame["id"]) == list(truth["id"])
    assert browser.choices("split") == sorted(truth["split"].unique())
    assert browser.choices("label") == sorted(truth["label"].dropna().unique())
    with pytest.raises(ValueError):
        browser.choices("id")
    counts = browser.counts()
    assert counts == {
        "rows": ROWS,
        "image": int(truth["image_sha256"].notna().sum()),
        "audio": int(truth["audio_sha256"].notna().sum()),
        "text": int(truth["text"].notna().sum()),
    }
    assert 0 < counts["image"] < ROWS and 0 < counts["audio"] < ROWS  # the demo misses some of each
    assert browser.counts([0, 1, 2])["rows"] == 3
    assert browser.summary(np.arange(7)) == f"7 of {ROWS} rows"


def test_no_filter_and_any_mean_every_row(browser: RowBrowser) -> None:
    everything = list(range(ROWS))
    assert list(browser.filter()) == everything
    assert list(browser.filter(split=RowBrowser.ANY, label="", modality=None, text="  ")) == everything
    assert browser.filter().dtype == np.int64


def test_filter_by_each_criterion(browser: RowBrowser, truth: pd.DataFrame) -> None:
    for split in browser.choices("split"):
        assert list(browser.filter(split=split)) == expect(truth["split"] == split)
    label = browser.choices("label")[0]
    assert list(browser.filter(label=label)) == expect(truth["label"] == label)
    assert list(browser.filter(modality="image")) == expect(truth["image_sha256"].notna())
    assert list(browser.filter(modality="audio")) == expect(truth["audio_sha256"].notna())
    assert list(browser.filter(modality="text")) == expect(truth["text"].notna())
    with pytest.raises(ValueError):
        browser.filter(modality="video")
    assert list(browser.filter(split="no such split")) == []


def test_text_matches_caption_or_id_ignoring_case(browser: RowBrowser, truth: pd.DataFrame) -> None:
    circles = browser.filter(text="  CIRCLE ")
    assert list(circles) == expect(truth["text"].fillna("").str.lower().str.contains("circle"))
    assert 0 < len(circles) < ROWS
    by_id = browser.filter(text="demo-000042")
    assert list(by_id) == [42]  # an id with no caption match still matches
    assert list(browser.filter(text="DEMO-00001")) == list(range(10, 20))


def test_filters_combine(browser: RowBrowser, truth: pd.DataFrame) -> None:
    split = browser.choices("split")[0]
    got = browser.filter(split=split, modality="audio", text="a")
    want = (
        (truth["split"] == split)
        & truth["audio_sha256"].notna()
        & (truth["text"].fillna("").str.contains("a") | truth["id"].str.contains("a"))
    )
    assert list(got) == expect(want) and len(got) > 0
    rows = browser.rows(got)
    assert (rows["split"] == split).all() and rows["audio"].all() and list(rows.index) == list(got)


def test_paging_clamps(browser: RowBrowser) -> None:
    positions = browser.filter()
    assert browser.pages(len(positions), 12) == 9 and browser.pages(0, 12) == 1
    assert browser.page(positions, 0, 12)[1].tolist() == list(range(12))
    number, last = browser.page(positions, 99, 12)
    assert number == 8 and last.tolist() == list(range(96, 100))
    assert browser.page(positions, -3, 12)[0] == 0
    assert browser.page(np.arange(0), 5, 12)[0] == 0


def test_items_carry_png_and_wav_bytes(browser: RowBrowser, truth: pd.DataFrame) -> None:
    both = browser.filter(modality="image")
    both = [int(p) for p in both if browser.frame["audio"].iloc[p]][:3]
    items = browser.items(both)
    assert [i.row for i in items] == both and [i.id for i in items] == [truth["id"][p] for p in both]
    for item in items:
        assert item.image_png.startswith(b"\x89PNG") and item.spectrogram_png.startswith(b"\x89PNG")
        assert item.audio_wav[:4] == b"RIFF" and item.audio_wav[8:12] == b"WAVE"
        assert item.label == truth["label"][item.row] and item.split == truth["split"][item.row]
        assert Image.open(io.BytesIO(item.image_png)).size[0] <= 128
    no_image = int(np.flatnonzero(~browser.frame["image"].to_numpy())[0])
    card = browser.item(no_image)
    assert card.image_png is None and card.row == no_image and card.note is None
    assert browser.items([]) == []


def test_thumbnails_for_a_grid(browser: RowBrowser) -> None:
    frame = browser.frame
    both = int(np.flatnonzero((frame["image"] & frame["audio"]).to_numpy())[0])
    no_audio = int(np.flatnonzero(~frame["audio"].to_numpy())[0])
    keys = [np.int64(both), no_audio]  # the grid's keys, as given (numpy or plain ints)
    thumbs = browser.thumbnails(keys)
    assert list(thumbs) == keys
    image, spec = thumbs[both]
    assert image.startswith(b"\x89PNG") and spec.startswith(b"\x89PNG")
    assert thumbs[no_audio][1] is None
    assert browser.thumbnails([]) == {}


def test_opens_a_uri(dataset: MmptDataset) -> None:
    browser = RowBrowser(dataset.uri)
    assert isinstance(browser.dataset, MmptDataset) and len(browser) == ROWS


def test_ingest_report_after_an_ingest_with_a_bad_row(tmp_path: Path) -> None:
    manifest = write_demo_files(tmp_path / "files", n_rows=12, seed=0)
    image = pd.read_csv(manifest)["image"].dropna().iloc[0]
    (manifest.parent / image).write_bytes(b"not an image")
    out = tmp_path / "made.lance"
    mmpt.ingest(manifest, out=out, quiet=True)
    ds = mmpt.open_dataset(out)
    report = ds.ingest_report()
    assert report is not None and report["totals"]["rejected"] == 1 and report["totals"]["written"] == 11
    assert len(report["rejected"]) == 1 and Path(image).name in str(report["rejected"][0])

    Path(tmp_path / "made.report.json").write_text("{ not json", encoding="utf-8")
    assert ds.ingest_report() is None  # a corrupt report reads as none
    Path(tmp_path / "made.report.json").unlink()
    assert ds.ingest_report() is None  # and so does a missing one
    remote = MmptDataset(ds.lance, "s3://bucket/made.lance")
    assert remote.ingest_report() is None


def test_no_report_next_to_a_dataset_that_was_never_ingested(dataset: MmptDataset, tmp_path: Path) -> None:
    copy = tmp_path / "copy.lance"
    shutil.copytree(dataset.uri, copy)
    assert mmpt.open_dataset(copy).ingest_report() is None
