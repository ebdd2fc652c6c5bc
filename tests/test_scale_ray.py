"""Ingest and embed on a local Ray (2 CPUs): the same rows, report and vectors as the single-process path, one
commit, and a failed or killed task that leaves the dataset as it was until a rerun completes."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import lance
import numpy as np
import pytest
import ray

from mmpt.cli import main
from mmpt.embed.api import embed_run
from mmpt.embed.export import staging_uri
from mmpt.errors import DataError
from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest
from mmpt.store.ray_ingest import FAIL_ROW, KILL_ROW, ray_ingest
from mmpt.store.synthetic import write_demo_files

VOLATILE = ("finished", "seconds", "dataset")  # report keys that differ between two ingests


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    """One local Ray for the module; `--ray` without an address reuses it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """40 demo rows plus two bad ones (a missing image, an image that does not decode)."""
    path = write_demo_files(tmp_path_factory.mktemp("ray_files"), n_rows=40, seed=0)
    (path.parent / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bad-missing", "images/nowhere.png", "", "lost", "x", "train", "red", "circle"])
        writer.writerow(["bad-broken", "images/broken.png", "", "broken", "x", "train", "red", "circle"])
    return path


@pytest.fixture(scope="module")
def run(tiny_run) -> Path:
    """The session's tiny run (read-only: embedding writes only into the dataset)."""
    return Path(tiny_run)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, manifest) -> Path:
    """Three fragments (an ingest and two appends) with one row deleted: row positions are not addresses."""
    base = tmp_path_factory.mktemp("ray_corpus")
    out = base / "corpus.lance"
    ingest(manifest, out, quiet=True)
    for start in (40, 60):
        more = write_demo_files(base / f"more{start}", n_rows=20, seed=0, start=start)
        ingest(more, out, append=True, quiet=True)
    open_dataset(out).lance.delete("id = 'demo-000003'")
    return out


def rows_of(uri: Path) -> tuple[list[dict], dict[str, list]]:
    ds = open_dataset(uri)
    plain = [f.name for f in ds.schema if f.name not in ("image", "audio")]
    positions = range(len(ds))
    return ds.lance.to_table(columns=plain).to_pylist(), {
        m: ds.read_blobs(m, positions) for m in ("image", "audio")
    }


def report_of(uri: Path) -> dict:
    report = json.loads(Path(str(uri).removesuffix(".lance") + ".report.json").read_text())
    return {k: v for k, v in report.items() if k not in VOLATILE}


def test_ray_ingest_writes_the_rows_and_report_of_the_single_process_path(manifest, tmp_path, capsys):
    ingest(manifest, tmp_path / "one.lance", quiet=True, batch_rows=8)
    main(
        [
            "ingest",
            str(manifest),
            "--out",
            str(tmp_path / "ray.lance"),
            "--ray",
            "--batch-rows",
            "8",
            "--quiet",
            "--json",
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    assert (printed["read"], printed["written"], printed["rejected"], printed["version"]) == (42, 40, 2, 1)
    assert rows_of(tmp_path / "ray.lance") == rows_of(tmp_path / "one.lance")  # same order, bytes, sha256
    assert report_of(tmp_path / "ray.lance") == report_of(tmp_path / "one.lance")
    assert [r["id"] for r in report_of(tmp_path / "ray.lance")["rejected"]] == ["bad-missing", "bad-broken"]
    # one fragment per task of 8 rows, the last task's 2 rows both bad: 5 fragments in one commit
    assert len(lance.dataset(tmp_path / "ray.lance").get_fragments()) == 5


def test_failed_ray_task_leaves_the_previous_version_and_a_rerun_completes(manifest, tmp_path, monkeypatch):
    out = tmp_path / "corpus.lance"
    ray_ingest(manifest, out, quiet=True, batch_rows=8)
    more = write_demo_files(tmp_path / "more", n_rows=30, seed=0, start=100)
    before = rows_of(out)
    monkeypatch.setenv(FAIL_ROW, "17")
    with pytest.raises(DataError, match="injected failure at row 17"):
        ray_ingest(more, out, append=True, quiet=True, batch_rows=8)
    assert lance.dataset(out).version == 1 and rows_of(out) == before
    monkeypatch.delenv(FAIL_ROW)
    result = ray_ingest(more, out, append=True, quiet=True, batch_rows=8)
    assert (result.dataset.version, len(result.dataset)) == (2, 70)


def test_killed_ray_worker_is_retried_and_the_ingest_completes(manifest, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ROW, f"20:{marker}")
    ray_ingest(manifest, tmp_path / "killed.lance", quiet=True, batch_rows=8)
    assert marker.exists()  # the first attempt of that task died with its worker process
    ingest(manifest, tmp_path / "one.lance", quiet=True)
    assert rows_of(tmp_path / "killed.lance") == rows_of(tmp_path / "one.lance")
    assert lance.dataset(tmp_path / "killed.lance").version == 1


def copy(corpus: Path, to: Path) -> Path:
    shutil.copytree(corpus, to)
    return to


def vectors(uri: Path) -> dict[str, list]:
    ds = lance.dataset(uri)
    return {c: ds.to_table(columns=["id", c]).to_pylist() for c in ds.schema.names if c.startswith("emb_")}


def assert_same_vectors(got: dict[str, list], want: dict[str, list]) -> None:
    assert sorted(got) == sorted(want)
    for column, rows in want.items():
        assert [r["id"] for r in got[column]] == [r["id"] for r in rows]
        for mine, theirs in zip(got[column], rows, strict=True):
            assert (mine[column] is None) == (theirs[column] is None), (column, mine["id"])
            if theirs[column] is not None:
                np.testing.assert_allclose(mine[column], theirs[column], rtol=1e-5, atol=1e-6)


def test_ray_embed_equals_single_process_and_tops_up_added_rows(corpus, run, tmp_path, capsys):
    one, many = copy(corpus, tmp_path / "one.lance"), copy(corpus, tmp_path / "ray.lance")
    start = lance.dataset(many).version
    embed_run(run, one, device="cpu", progress=False)
    args = ["embed", "--run", str(run), "--data", str(many), "--ray", "--device", "cpu", "--quiet", "--json"]
    main([*args, "--chunk-rows", "16"])
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == start + 1  # every column in one Merge commit
    assert_same_vectors(vectors(many), vectors(one))
    ds = lance.dataset(many)
    assert ds.tags.list()["emb-run"]["version"] == start + 1
    assert (
        ds.schema.field("emb_run_text").metadata == lance.dataset(one).schema.field("emb_run_text").metadata
    )
    # rows appended later: the existing columns are topped up, as the single-process path does
    for uri in (one, many):
        ingest(
            write_demo_files(tmp_path / f"more-{uri.stem}", n_rows=12, seed=0, start=200),
            uri,
            append=True,
            quiet=True,
        )
    embed_run(run, one, device="cpu", progress=False)
    main([*args, "--chunk-rows", "8"])
    assert json.loads(capsys.readouterr().out)["columns"]["text"]["written"] == 12
    assert_same_vectors(vectors(many), vectors(one))


def test_failed_ray_embed_keeps_the_version_and_its_staged_vectors(corpus, run, tmp_path, monkeypatch):
    one, many = copy(corpus, tmp_path / "one.lance"), copy(corpus, tmp_path / "ray.lance")
    start = lance.dataset(many).version
    expected = embed_run(run, one, ["text", "image"], device="cpu", progress=False)
    from mmpt.embed.ray_embed import FAIL_ROW as EMBED_FAIL
    from mmpt.embed.ray_embed import ray_embed

    monkeypatch.setenv(EMBED_FAIL, "50")  # in the third fragment: the first two are embedded and staged
    with pytest.raises(DataError, match="stays at version"):
        ray_embed(run, many, ["text", "image"], device="cpu", chunk_rows=8, quiet=True, concurrency=1)
    assert lance.dataset(many).version == start
    staged = lance.dataset(staging_uri(str(many), "emb_run_text")).count_rows()
    assert staged >= 40
    monkeypatch.delenv(EMBED_FAIL)
    written = ray_embed(run, many, ["text", "image"], device="cpu", chunk_rows=8, quiet=True)
    assert written == expected  # rows holding each modality, staged ones included
    assert lance.dataset(many).version == start + 1
    assert_same_vectors(vectors(many), vectors(one))
    assert not Path(staging_uri(str(many), "emb_run_text")).exists()
