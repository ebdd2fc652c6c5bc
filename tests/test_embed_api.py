"""Python API of a trained run: the Encoder, embed_run (columns, resume, conflicts) and search_run."""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import time

import lance
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import mmpt
from mmpt.embed import columns
from mmpt.embed.api import embed_run, search_run, search_text
from mmpt.embed.compute import prefetched
from mmpt.embed.encoder import load_model, run_name
from mmpt.embed.export import EmbeddingWriter, staging_uri
from mmpt.errors import ConfigError, DataError
from mmpt.models import build_model, preset_config, save_model

ATOL = 1e-5
OPEN_LATEST = columns.open_latest


@pytest.fixture
def data(demo_dataset, tmp_path) -> str:
    """A private copy of the demo dataset (the session fixture is read-only)."""
    path = tmp_path / "demo.lance"
    shutil.copytree(demo_dataset.uri, path)
    return str(path)


@pytest.fixture(scope="module")
def embedded(demo_dataset, tiny_run, tmp_path_factory) -> str:
    """A copy of the demo dataset holding the tiny run's embeddings of every modality (read-only)."""
    path = tmp_path_factory.mktemp("embedded") / "demo.lance"
    shutil.copytree(demo_dataset.uri, path)
    embed_run(tiny_run, path, batch_size=64, progress=False)
    return str(path)


def size(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def blob_files(uri: str) -> set[str]:
    ds = lance.dataset(uri)
    ids = {ds.lance_schema.field(c).id() for c in ("image", "audio")}
    return {d.path for f in ds.get_fragments() for d in f.data_files() if ids & set(d.fields)}


def rows_with(uri: str, modality: str, n: int) -> tuple[list[int], list[str]]:
    """Positions and ids of the first n rows holding `modality`."""
    table = lance.dataset(uri).to_table(
        columns=["id", modality if modality == "text" else f"{modality}_sha256"]
    )
    positions = [i for i, v in enumerate(table.column(1).to_pylist()) if v is not None][:n]
    return positions, [table["id"][i].as_py() for i in positions]


def blobs(uri: str, modality: str, positions: list[int]) -> list[bytes]:
    return [b for _, b in lance.dataset(uri).read_blobs(modality, indices=positions, preserve_order=True)]


def stored(uri: str, modality: str, ids: list[str]) -> np.ndarray:
    got_ids, vectors = mmpt.embeddings(uri, "run", modality)
    index = {key: i for i, key in enumerate(got_ids)}
    return vectors[[index[key] for key in ids]]


def test_encoder_matches_the_dataset_columns(tiny_run, embedded, tmp_path):
    enc = mmpt.load_model(tiny_run, device="cpu")
    assert enc.modalities == ("image", "text", "audio") and enc.dim == 128
    assert load_model(tiny_run, device="cpu") is enc  # cached while the weights are unchanged

    texts = enc.embed_text(["a red circle", "a blue square on a grey background", ""])
    assert texts.shape == (3, 128) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert enc.embed_text([]).shape == (0, 128)

    positions, ids = rows_with(embedded, "image", 5)
    raw = blobs(embedded, "image", positions)
    pil = [Image.open(io.BytesIO(b)) for b in raw]
    (tmp_path / "img0.png").write_bytes(raw[0])
    from_pil = enc.embed_images(pil)
    np.testing.assert_allclose(from_pil, stored(embedded, "image", ids), atol=ATOL)
    np.testing.assert_allclose(
        enc.embed_images([tmp_path / "img0.png", str(tmp_path / "img0.png"), raw[0]]),
        np.repeat(from_pil[:1], 3, axis=0),
        atol=ATOL,
    )

    positions, ids = rows_with(embedded, "audio", 4)
    raw = blobs(embedded, "audio", positions)
    waves = [sf.read(io.BytesIO(b), dtype="float32")[0] for b in raw]
    assert sf.info(io.BytesIO(raw[0])).samplerate == enc.spec.sample_rate
    from_arrays = enc.embed_audio(waves)
    np.testing.assert_allclose(from_arrays, stored(embedded, "audio", ids), atol=ATOL)
    (tmp_path / "a0.wav").write_bytes(raw[0])
    np.testing.assert_allclose(enc.embed_audio([tmp_path / "a0.wav"]), from_arrays[:1], atol=ATOL)
    stereo = np.stack([waves[0], waves[0]], axis=1)  # [S, 2]
    np.testing.assert_allclose(
        enc.embed_audio([stereo, torch.from_numpy(waves[0])]),
        np.repeat(from_arrays[:1], 2, axis=0),
        atol=ATOL,
    )
    resampled = enc.embed_audio([np.repeat(waves[0], 2)], sample_rate=2 * enc.spec.sample_rate)
    assert resampled.shape == (1, 128) and float(resampled[0] @ from_arrays[0]) > 0.99

    positions, ids = rows_with(embedded, "text", 6)
    captions = lance.dataset(embedded).take(positions, columns=["text"])["text"].to_pylist()
    np.testing.assert_allclose(enc.embed_text(captions), stored(embedded, "text", ids), atol=ATOL)

    ids_t, tensor = mmpt.embeddings(embedded, tiny_run, "image", format="torch", split="val")
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (len(ids_t), 128)
    ids_a, arrow = mmpt.embeddings(mmpt.open_dataset(embedded), "run", "image", format="arrow")
    assert len(ids_a) == len(arrow) == lance.dataset(embedded).count_rows(filter="image IS NOT NULL")

    with pytest.raises(DataError, match="image file not found"):
        enc.embed_images([tmp_path / "missing.png"])
    with pytest.raises(DataError, match="list of strings"):
        enc.embed_text("a red circle")
    with pytest.raises(DataError, match="list of images"):
        enc.embed_images(pil[0])
    with pytest.raises(DataError, match="list of clips"):
        enc.embed_audio(waves[0])


def test_embed_run_adds_columns_without_rewriting_blobs(tiny_run, data):
    before, blob_paths, version = size(data), blob_files(data), lance.dataset(data).version
    written = embed_run(tiny_run, data, ["image", "audio"], batch_size=64, chunk_rows=100, progress=False)
    ds = lance.dataset(data)
    expected = {m: ds.count_rows(filter=f"{m} IS NOT NULL") for m in ("image", "audio")}
    assert written == expected
    payload = sum(expected.values()) * 128 * 4
    assert payload <= size(data) - before < payload + 100_000  # the vectors and manifests, not the blobs
    assert blob_files(data) == blob_paths
    assert ds.version == version + 2  # one commit per column
    assert ds.tags.list()["emb-run"]["version"] == ds.version
    assert ds.schema.field("emb_run_image").type == columns.vector_type(128)
    assert "emb_run_text" not in ds.schema.names
    assert not os.path.exists(staging_uri(ds.uri, "emb_run_image"))
    assert embed_run(tiny_run, data, ["image", "audio"], progress=False) == {"image": 0, "audio": 0}
    assert lance.dataset(data).version == ds.version  # nothing to do: no new commit


def test_interrupted_export_resumes(tiny_run, data, monkeypatch, caplog):
    calls: list[tuple[str, list[str]]] = []
    real_add = EmbeddingWriter.add

    def failing_add(self, ids, vectors):
        if len(calls) == 2:  # both modalities staged their first chunk: now "crash"
            raise RuntimeError("killed")
        calls.append((self.modality, list(ids)))
        real_add(self, ids, vectors)

    monkeypatch.setattr(EmbeddingWriter, "add", failing_add)
    version = lance.dataset(data).version
    with pytest.raises(RuntimeError, match="killed"):
        embed_run(tiny_run, data, ["image", "text"], batch_size=32, chunk_rows=64, progress=False)
    assert lance.dataset(data).version == version  # nothing half-written into the dataset
    assert "emb_run_image" not in lance.dataset(data).schema.names
    first = {m: set(ids) for m, ids in calls}
    assert set(first) == {"image", "text"} and all(50 <= len(v) <= 64 for v in first.values())

    calls.clear()
    monkeypatch.setattr(
        EmbeddingWriter,
        "add",
        lambda self, ids, v: (calls.append((self.modality, list(ids))), real_add(self, ids, v)),
    )
    with caplog.at_level(logging.INFO, logger="mmpt.embed.api"):
        written = embed_run(tiny_run, data, ["image", "text"], batch_size=32, chunk_rows=64, progress=False)
    again = {m: set() for m in first}
    for m, ids in calls:
        again[m] |= set(ids)
    assert all(not (again[m] & first[m]) for m in first)  # nothing embedded twice
    assert (
        f"emb_run_image: {len(again['image'])} rows to embed, {len(first['image'])} already done"
        in caplog.text
    )
    ds = lance.dataset(data)
    for m in first:
        holding = ds.count_rows(filter=f"{m} IS NOT NULL")
        assert written[m] == holding == len(first[m]) + len(again[m])
        assert ds.count_rows(filter=f"emb_run_{m} IS NOT NULL") == holding
    enc = load_model(tiny_run, device="cpu")  # the resumed column equals a fresh embedding
    positions, ids = rows_with(data, "image", 80)
    pil = [Image.open(io.BytesIO(b)) for b in blobs(data, "image", positions)]
    np.testing.assert_allclose(enc.embed_images(pil), stored(data, "image", ids), atol=ATOL)


def competing_writer(uri: str, times: int, first_row: int = 0):
    """columns.open_latest that lets another writer delete a row before our commit, `times` times."""
    calls = {"n": 0}

    def open_then_race(u, storage_options=None):
        ds = OPEN_LATEST(u, storage_options)
        if calls["n"] < times:
            lance.dataset(uri).delete(f"id = 'demo-{first_row + calls['n']:06d}'")
        calls["n"] += 1
        return ds

    return open_then_race


def test_export_survives_a_concurrent_writer_or_fails_cleanly(tiny_run, data, monkeypatch):
    monkeypatch.setattr(columns, "open_latest", competing_writer(data, times=99))
    with pytest.raises(DataError, match="another writer kept changing"):
        embed_run(tiny_run, data, ["text"], progress=False)
    assert "emb_run_text" not in lance.dataset(data).schema.names  # nothing half-written
    staged = EmbeddingWriter(data, "run", "text", 128)
    assert staged.pending() > 0  # the work is kept for the next attempt

    pending, version = staged.pending(), lance.dataset(data).version
    monkeypatch.setattr(columns, "open_latest", competing_writer(data, times=1, first_row=100))
    assert embed_run(tiny_run, data, ["text"], progress=False)["text"] == pending  # nothing re-embedded
    assert lance.dataset(data).version == version + 2  # the competing delete, then our retried commit
    ds = lance.dataset(data)
    assert ds.count_rows(filter="emb_run_text IS NOT NULL") == ds.count_rows(filter="text IS NOT NULL")


def test_text_search_finds_matching_sounds_and_images(tiny_run, embedded):
    labels = sorted(set(lance.dataset(embedded).to_table(columns=["label"])["label"].to_pylist()) - {None})
    assert len(labels) == 20  # chance of a matching label in the top 5 is 1/20
    for modality in ("audio", "image"):
        precision = np.mean(
            [
                [
                    h.label == label
                    for h in search_text(tiny_run, embedded, f"a {label}", modality=modality, k=5)
                ]
                for label in labels
            ]
        )
        assert precision > 0.12, (modality, precision)
    hits = search_text(tiny_run, embedded, "a red circle", modality="audio", k=4, split="test")
    assert len(hits) == 4 and {h.split for h in hits} == {"test"}
    hits = search_text(tiny_run, embedded, "a red circle", modality="image", k=3, label="blue star")
    assert {h.label for h in hits} == {"blue star"}


def test_planted_neighbours_by_file_and_by_row(tiny_run, embedded, tmp_path):
    [pos], [row] = rows_with(embedded, "image", 1)
    (tmp_path / "q.png").write_bytes(blobs(embedded, "image", [pos])[0])
    hits = search_run(tiny_run, embedded, image=tmp_path / "q.png", modality="image", k=3)
    assert hits[0].id == row and hits[0].score > 0.9999 and hits[1].score < hits[0].score

    [pos], [row] = rows_with(embedded, "audio", 1)
    (tmp_path / "q.wav").write_bytes(blobs(embedded, "audio", [pos])[0])
    hits = search_run(tiny_run, embedded, audio=tmp_path / "q.wav", modality="audio", k=3)
    assert hits[0].id == row and hits[0].score > 0.9999

    # row id -> neighbours: the row's image embedding against audio, the row itself left out
    both = lance.dataset(embedded).to_table(columns=["id"], filter="image IS NOT NULL AND audio IS NOT NULL")
    row = both["id"][0].as_py()
    ids, image_vecs = mmpt.embeddings(embedded, "run", "image")
    audio_ids, audio_vecs = mmpt.embeddings(embedded, "run", "audio")
    scores = audio_vecs @ image_vecs[ids.index(row)]
    order = [audio_ids[i] for i in np.argsort(-scores) if audio_ids[i] != row][:5]
    hits = search_run(tiny_run, embedded, row_id=row, from_modality="image", modality="audio", k=5)
    assert [h.id for h in hits] == order and row not in {h.id for h in hits}
    hits = search_run(tiny_run, embedded, row_id=row, modality="image", k=5)
    assert row not in {h.id for h in hits} and len(hits) == 5


def test_vector_index_used_above_the_threshold(tiny_run, embedded, tmp_path):
    path = tmp_path / "indexed.lance"
    shutil.copytree(embedded, path)
    exact = search_text(tiny_run, path, "a green square", modality="image", k=5)
    indexed = search_text(tiny_run, path, "a green square", modality="image", k=5, index_threshold=100)
    assert [i.name for i in lance.dataset(path).describe_indices()] == ["emb_run_image_idx"]
    assert len({h.id for h in exact} & {h.id for h in indexed}) >= 3


def test_bad_input(tiny_run, embedded, data, tmp_path):
    cfg = preset_config("tiny")
    cfg.modalities = ["image", "text"]
    ckpt = save_model(build_model(cfg), tmp_path / "checkpoints" / "step-0000001")
    with pytest.raises(ConfigError, match=r"has no audio tower; it embeds image, text"):
        embed_run(ckpt, data, ["audio"], progress=False)
    with pytest.raises(ConfigError, match=r"has no audio tower; it embeds image, text"):
        search_text(ckpt, data, "a dog barking", modality="audio")
    with pytest.raises(ConfigError, match="has no audio tower"):
        load_model(ckpt, device="cpu").embed_audio([np.zeros(100, np.float32)])
    with pytest.raises(DataError, match="empty query"):
        search_text(tiny_run, embedded, "   ", modality="image")
    with pytest.raises(DataError, match="exactly one query"):
        search_run(tiny_run, embedded, text="a", row_id="demo-000001", modality="image")
    with pytest.raises(DataError, match="larger than the"):
        search_text(tiny_run, embedded, "a red circle", modality="image", k=10_000)
    with pytest.raises(DataError, match="no row with id"):
        search_run(tiny_run, embedded, row_id="nope", modality="image")
    with pytest.raises(DataError, match="split 'nope' has no rows"):
        embed_run(tiny_run, data, ["text"], split="nope", progress=False)
    with pytest.raises(ConfigError, match="unknown modality"):
        embed_run(tiny_run, data, ["smell"], progress=False)
    with pytest.raises(ConfigError, match="no checkpoint|not an mmpt run|not found"):
        embed_run(tmp_path / "nothing", data, progress=False)


def test_run_names():
    assert run_name("/x/runs/my run.v2") == "my_run_v2"
    assert run_name("/x/runs/r1", name="custom-1") == "custom-1"
    with pytest.raises(DataError, match="run name"):
        run_name("/x/r", name="a b")


def test_prefetch_thread_reraises_and_stops_when_closed():
    def failing():
        yield 1
        yield 2
        raise ValueError("bad blob")

    got = []
    with pytest.raises(ValueError, match="bad blob"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1, 2]

    produced: list[int] = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    items = prefetched(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    settled = len(produced)
    time.sleep(0.3)
    assert len(produced) == settled <= 3 + 2 + 1  # consumed + queued + the one being built
    assert not [t for t in threading.enumerate() if t.name == "mmpt-prefetch"]
