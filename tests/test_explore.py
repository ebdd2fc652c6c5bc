"""The headless explorer: points, hover cards, neighbours, search, selection, exports, colours and layouts."""

from __future__ import annotations

import io
import json
import shutil
from concurrent.futures import CancelledError

import lance
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

import mmpt
from mmpt.embed.api import embed_run, search_text
from mmpt.embed.columns import write_embeddings
from mmpt.embed.projections import project
from mmpt.errors import ConfigError, DataError
from mmpt.explore import layout, media
from mmpt.explore import vectors as point_vectors
from mmpt.explore.colours import OKABE_ITO, category_colours
from mmpt.explore.events import Signal
from mmpt.explore.session import POINT_COLUMNS, Explorer


@pytest.fixture(scope="module")
def embedded(demo_dataset, tiny_run, tmp_path_factory) -> str:
    """A copy of the demo dataset holding the tiny run's embeddings of image, text and audio (read-only)."""
    path = tmp_path_factory.mktemp("explore") / "demo.lance"
    shutil.copytree(demo_dataset.uri, path)
    embed_run(tiny_run, path, batch_size=64, progress=False, device="cpu")
    return str(path)


@pytest.fixture
def data(embedded, tmp_path) -> str:
    """A private, writable copy of the embedded dataset."""
    path = tmp_path / "demo.lance"
    shutil.copytree(embedded, path)
    return str(path)


@pytest.fixture(scope="module")
def ex(embedded, tiny_run) -> Explorer:
    return Explorer(embedded, tiny_run, device="cpu")


def blob(uri: str, modality: str, row: int) -> bytes:
    return lance.dataset(uri).read_blobs(modality, indices=[row], preserve_order=True)[0][1]


def rows_with(uri: str, *modalities: str) -> pd.DataFrame:
    """id, row position and label of the rows holding every given modality (by their embedding column)."""
    ds = lance.dataset(uri)
    table = ds.to_table(columns=["id", "label", *[f"emb_run_{m}" for m in modalities]]).to_pandas()
    table["row"] = np.arange(len(table))
    keep = np.all([table[f"emb_run_{m}"].notna() for m in modalities], axis=0)
    return table[keep][["id", "row", "label"]].reset_index(drop=True)


def test_points_one_per_row_and_modality(ex, embedded):
    import mmpt.explore

    assert mmpt.explore.Explorer is Explorer  # the package's lazy public name
    df = ex.points()
    assert tuple(df.columns) == POINT_COLUMNS and len(df) == len(ex)
    ds = lance.dataset(embedded)
    table = ds.to_table(columns=["id", "label", "split", "text"]).to_pandas()
    for m in ("image", "text", "audio"):
        present = ds.count_rows(filter=f"emb_run_{m} IS NOT NULL")
        assert 250 < (df.modality == m).sum() == present
    assert not df.duplicated(["id", "modality"]).any()
    assert np.isfinite(df[["x", "y"]].to_numpy()).all()
    assert (table.id.to_numpy()[df.row] == df.id).all()  # row is the row position of id
    assert (table.label.to_numpy()[df.row] == df.label.astype(object)).all()
    assert (table.text.fillna("-").to_numpy()[df.row] == df.caption.fillna("-")).all()
    assert df.cluster.isna().all()  # no cluster columns cached yet
    # the same layout on a second call and in a second explorer (seeded)
    again = Explorer(embedded, "run").points()
    assert np.array_equal(again[["x", "y"]].to_numpy(), df[["x", "y"]].to_numpy())


def test_fast_pca_finds_the_leading_axes():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    axes = np.linalg.qr(rng.normal(size=(64, 2)))[0].T
    x = (rng.normal(size=(30_000, 2)) * [5.0, 3.0]) @ axes + 0.3 * rng.normal(size=(30_000, 64))
    x = x.astype(np.float32)
    ours = layout.fast_pca(x, sample=10_000)
    exact = PCA(2).fit_transform(x)
    for i in range(2):  # the same axes up to sign, and the sign rule is deterministic
        assert abs(np.corrcoef(ours[:, i], exact[:, i])[0, 1]) > 0.999
    assert np.array_equal(ours, layout.fast_pca(x, sample=10_000))


def test_single_modality_reuses_the_cached_projection(data):
    cached = project(data, "run", "audio", "pca", progress=lambda f, m: None)
    ex = Explorer(data, "run", modalities=["audio"])
    df = ex.points()
    assert set(df.modality) == {"audio"}
    got = dict(zip(df.id, df[["x", "y"]].to_numpy().tolist(), strict=True))
    assert np.allclose([got[i] for i in cached.ids], cached.values)


def test_item_for_image_and_audio_rows(ex, embedded):
    both = rows_with(embedded, "image", "audio")
    row_id, row = both.id[0], int(both.row[0])
    item = ex.item(row_id, "image")
    assert (item.id, item.modality, item.row, item.label) == (row_id, "image", row, both.label[0])
    original = Image.open(io.BytesIO(blob(embedded, "image", row))).convert("RGB")
    thumb = Image.open(io.BytesIO(item.image_png))
    assert thumb.format == "PNG" and max(thumb.size) <= media.THUMBNAIL
    assert np.array_equal(np.asarray(thumb.convert("RGB")), np.asarray(original))  # 64 px: not resized
    wave, rate = sf.read(io.BytesIO(item.audio_wav), dtype="float32")
    stored, stored_rate = sf.read(io.BytesIO(blob(embedded, "audio", row)), dtype="float32")
    assert rate == stored_rate and np.array_equal(wave, stored)
    spec = Image.open(io.BytesIO(item.spectrogram_png))
    assert spec.format == "PNG" and spec.size == media.SPECTROGRAM_SIZE
    assert ex.item(row_id) is ex.item(row_id)  # LRU-cached card
    assert ex.item(row_id, "audio").modality == "audio" and "<audio" in item.to_html()

    no_image = lance.dataset(embedded).to_table(columns=["id"], filter="image IS NULL")["id"][0].as_py()
    card = ex.item(no_image)
    assert card.image_png is None and card.note is None
    with pytest.raises(DataError, match="no row with id"):
        ex.item("nope")


def test_media_helpers():
    rate = 16_000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    db = media.log_mel(tone, rate)
    edges = 700.0 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), media.N_MELS + 2) / 2595) - 1)
    assert abs(edges[1:-1][db.mean(axis=1).argmax()] - 1000) < 120  # the brightest band holds 1 kHz
    buf = io.BytesIO()
    sf.write(buf, tone, rate, format="FLAC")
    wav = media.wav_bytes(buf.getvalue())  # FLAC is transcoded to WAV
    assert wav[:4] == b"RIFF"
    assert np.allclose(sf.read(io.BytesIO(wav), dtype="float32")[0], tone, atol=1e-4)
    card = media.Item(id="x", modality=None, row=0, label=None, split=None, caption=None)
    item = media.build_item(card, b"not an image", b"not audio")
    assert item.image_png is item.audio_wav is None
    assert "image does not decode" in item.note and "audio does not decode" in item.note
    meta = {"id": "x", "modality": None, "row": 0, "label": "l", "split": None, "caption": None}
    assert media.build_item(meta, None, None) == media.Item(**meta)  # a dict of the fields works too


def test_planted_neighbour_is_found(data, monkeypatch):
    rows = rows_with(data, "image")
    a, b = rows.id[3], rows.id[200]
    ids, vectors = mmpt.embeddings(data, "run", "image")
    planted = vectors[ids.index(a)] + 1e-3 * np.random.default_rng(0).normal(size=vectors.shape[1])
    write_embeddings(data, "run", "image", [b], planted[None].astype(np.float32))
    ex = Explorer(data, "run")
    hits = ex.neighbours(a, k=5, modality="image")
    assert list(hits.columns[:3]) == ["id", "modality", "score"]
    assert hits.id[0] == b and hits.score[0] > 0.999 and a not in set(hits.id)
    assert set(hits.modality) == {"image"} and (np.diff(hits.score) <= 0).all()
    # the same as brute force over the image block
    ids, vectors = mmpt.embeddings(data, "run", "image")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit[ids.index(a)]
    want = [ids[i] for i in np.argsort(-scores) if ids[i] != a][:5]
    assert list(hits.id) == want and np.allclose(hits.score, np.sort(scores)[::-1][1:6], atol=1e-5)
    # the float16 candidate pass (used on large blocks) re-ranks to the same answer
    monkeypatch.setattr(point_vectors, "EXACT_BELOW", 0)
    fast = ex.neighbours(a, k=5, modality="image")
    assert list(fast.id) == want and np.allclose(fast.score, hits.score)
    cross = ex.neighbours(a, k=4, modality="image", target=["audio", "text"])
    assert set(cross.modality) <= {"audio", "text"} and len(cross) == 4
    assert len(ex.neighbours(a, k=10_000, target="all")) == len(ex) - 1  # fewer than k: all of them
    with pytest.raises(DataError, match="not explored"):
        ex.neighbours(a, modality="video")


def test_search_by_text_image_and_sound(ex, embedded, tiny_run):
    hits = ex.search("a red circle", k=5, modality="image")
    reference = search_text(tiny_run, embedded, "a red circle", modality="image", k=5, progress=False)
    assert list(hits.id) == [h.id for h in reference]
    assert np.allclose(hits.score, [h.score for h in reference], atol=1e-4)
    labels = sorted(set(ex.points().label.dropna()))
    assert len(labels) == 20  # chance of a matching label in the top 5 is 1/20
    for modality in ("image", "audio"):
        precision = np.mean(
            [(ex.search(f"a {lab}", k=5, modality=modality).label == lab).mean() for lab in labels]
        )
        assert precision > 0.12, (modality, precision)
    both = rows_with(embedded, "image", "audio")
    row_id, row = both.id[5], int(both.row[5])
    by_image = ex.search(blob(embedded, "image", row), k=3, modality="image")
    assert by_image.id[0] == row_id and by_image.score[0] > 0.9999
    wave, rate = sf.read(io.BytesIO(blob(embedded, "audio", row)), dtype="float32")
    by_sound = ex.search(wave, k=3, modality="audio", sample_rate=rate)
    assert by_sound.id[0] == row_id and by_sound.score[0] > 0.9999
    assert set(ex.search("a blue star", k=6).modality) <= {"image", "audio"}  # default: the other modalities
    with pytest.raises(DataError, match="empty query"):
        ex.search("   ")


def test_selection_fires_only_on_change(ex):
    df = ex.points()
    a, b, c = df.id[df.row == 1].iloc[0], df.id[df.row == 2].iloc[0], df.id[df.row == 3].iloc[0]
    seen = []
    disconnect = ex.on_selection(seen.append)
    ex.selection = [b, a]
    assert seen == [(a, b)] and ex.selection == (a, b)  # row order, whatever the given order
    ex.selection = [a, b, a]
    assert len(seen) == 1  # same value: no event
    with pytest.raises(DataError, match="not in the dataset"):
        ex.selection = [a, "nope"]
    assert ex.selection == (a, b) and len(seen) == 1
    assert ex.select_points(np.flatnonzero(df.id == c)) and seen[-1] == (c,)
    assert set(ex.selection_points()) == set(np.flatnonzero(df.id == c))
    with ex.events.selection.blocked():
        ex.selection = [a]
    assert len(seen) == 2 and ex.selection == (a,)
    disconnect()
    ex.selection = []
    assert len(seen) == 2 and ex.selection == ()


def test_signal_survives_a_broken_callback(caplog):
    signal, got = Signal("x"), []
    signal.connect(lambda v: 1 / 0)
    signal.connect(got.append)
    signal.emit(3)
    assert got == [3] and "x callback" in caplog.text


def test_export_selection(data, tmp_path):
    ex = Explorer(data, "run")
    with pytest.raises(DataError, match="nothing is selected"):
        ex.export_selection(tmp_path / "x.parquet")
    picked = list(ex.points().id.unique()[[5, 1, 40, 77]])
    ex.selection = picked
    frame = ex.selected_frame()
    assert list(frame.id) == sorted(picked) and "image" not in frame and "emb_run_image" not in frame
    assert {"label", "split", "text", "row", "colour"} <= set(frame.columns)

    path = ex.export_selection(tmp_path / "out" / "sel.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    path = ex.export_selection(tmp_path / "sel.csv", format="csv")
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert list(back.id) == list(frame.id) and list(back.label) == list(frame.label)
    assert list(back.row) == list(frame.row)
    assert not [p for p in tmp_path.rglob("*.tmp")]  # written via temp files, renamed

    text = ex.export_selection(format="lance-filter")
    assert text.startswith("id IN (") and sorted(
        lance.dataset(data).to_table(filter=text)["id"].to_pylist()
    ) == sorted(picked)

    copy = ex.export_selection(tmp_path / "sel.lance", format="lance")
    out = lance.dataset(copy)
    assert out.to_table(columns=["id"])["id"].to_pylist() == sorted(picked)
    row = int(frame.row[0])
    assert out.read_blobs("image", indices=[0], preserve_order=True)[0][1] == blob(data, "image", row)
    with pytest.raises(DataError, match="already exists"):
        ex.export_selection(tmp_path / "sel.lance", format="lance")

    assert ex.export_selection("picked-1", format="tag") == "picked-1"
    record = json.loads((tmp_path / "demo.lance" / "_mmpt" / "selections" / "picked-1.json").read_text())
    tagged = lance.dataset(data, version="picked-1").to_table(filter=record["filter"])
    assert sorted(tagged["id"].to_pylist()) == sorted(picked) and record["version"] == ex.lance.version
    with pytest.raises(DataError, match="tag"):
        ex.export_selection("../escape", format="tag")


def test_missing_embeddings_is_one_line(demo_dataset, tiny_run, data):
    with pytest.raises(ConfigError) as err:
        Explorer(demo_dataset, tiny_run)
    message = str(err.value)
    assert "\n" not in message and "mmpt embed --run" in message and "embed=True" in message
    lance.dataset(data).drop_columns(["emb_run_text"])
    with pytest.raises(ConfigError, match="no embeddings of text"):
        Explorer(data, tiny_run, modalities=["text"])
    ex = Explorer(data, tiny_run, modalities=["text"], embed=True, progress=False, device="cpu")
    assert ex.modalities == ("text",) and (ex.points().modality == "text").sum() > 250


def test_colours_are_stable(ex, embedded):
    colours = ex.colours("label")
    assert list(colours) == sorted(colours) and len(colours) == 20
    assert all(len(v) == 7 and v.startswith("#") for v in colours.values())
    assert colours == Explorer(embedded, "run").colours("label")
    assert category_colours(reversed(list(colours))) == colours  # order of appearance does not matter
    assert ex.colours("modality") == {"image": "#0072b2", "text": "#009e73", "audio": "#d55e00"}
    assert ex.colours("split") == {"train": "#0072b2", "val": "#e69f00", "test": "#cc79a7"}
    assert category_colours(["b", "a", None]) == {"a": OKABE_ITO[0], "b": OKABE_ITO[1], None: "#bdbdbd"}
    per_point = ex.point_colours("label")
    df = ex.points()
    assert len(per_point) == len(df) and per_point[0] == colours[df.label[0]]
    with pytest.raises(DataError, match="colour by"):
        ex.colours("size")


def test_hover_and_links(ex):
    df = ex.points()
    for i in (0, len(df) // 2, len(df) - 1):
        x, y = df.x[i], df.y[i]
        hit = ex.hover(x, y)
        assert hit is not None and np.allclose(df.loc[hit, ["x", "y"]].to_numpy(float), [x, y])
    span = float(df.x.max() - df.x.min())
    assert ex.hover(df.x.max() + span, df.y.max() + span, radius=span / 10) is None
    pairs = ex.link_rows("image", "audio")
    assert (
        len(pairs)
        == (
            (df.modality == "image").groupby(df.row).any() & (df.modality == "audio").groupby(df.row).any()
        ).sum()
    )
    assert (df.row.to_numpy()[pairs[:, 0]] == df.row.to_numpy()[pairs[:, 1]]).all()
    assert set(df.modality[pairs[:, 0]]) == {"image"} and set(df.modality[pairs[:, 1]]) == {"audio"}


def test_background_layout_is_cached_and_announced(data):
    ex = Explorer(data, "run")
    announced = []
    ex.on_points(announced.append)
    job = ex.project("tsne", max_iter=250)
    coords = job.result(timeout=300)
    assert job.done() and job.progress[0] == 1.0 and announced == ["tsne"]
    assert coords.shape == (len(ex), 2) and np.isfinite(coords).all()
    assert np.array_equal(ex.points("tsne")[["x", "y"]].to_numpy(), coords) and ex.method == "tsne"
    schema = lance.dataset(data).schema
    assert {f"proj_run_{m}_tsne_joint" for m in ("image", "text", "audio")} <= set(schema.names)
    messages = []
    reused = Explorer(data, "run").project("tsne", on_progress=lambda f, m: messages.append(m), max_iter=250)
    assert np.allclose(reused.result(timeout=60), coords) and "tsne: cached" in messages

    one = Explorer(data, "run", modalities=["image"])
    quiet = []
    one.on_points(quiet.append)
    job = one.project("tsne", max_iter=250)
    job.cancel()
    with pytest.raises(CancelledError):
        job.result(timeout=300)
    assert quiet == [] and "proj_run_image_tsne" not in lance.dataset(data).schema.names


def test_clusters_colour_points_and_are_reused(data):
    ex = Explorer(data, "run")
    assert ex.points().cluster.isna().all()
    seen = []
    ex.on_points(seen.append)
    labels = ex.cluster(4)
    df = ex.points()
    assert seen == ["pca"] and (labels >= 0).all() and set(labels) == {0, 1, 2, 3}
    assert df.cluster.notna().all() and (df.cluster.to_numpy() == labels).all()
    assert set(ex.colours("cluster")) == {0, 1, 2, 3}
    reopened = Explorer(data, "run").points()  # read back from the cached cluster_run_<m>_k4 columns
    assert (reopened.cluster.to_numpy() == labels).all()
