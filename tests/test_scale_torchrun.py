"""`torchrun --nproc_per_node=2 -m mmpt -- embed`: two gloo ranks write the vectors one rank writes, and resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lance
import numpy as np
import pytest
from s3_support import free_port

from mmpt.embed.distributed_embed import shard
from mmpt.embed.export import EmbeddingWriter, staging_uri


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_run):
    """A 60-row demo dataset and the session's tiny run."""
    from mmpt.store.synthetic import make_demo_dataset

    base = tmp_path_factory.mktemp("torchrun")
    make_demo_dataset(base / "demo.lance", n_rows=60, seed=0)
    return base / "demo.lance", tiny_run


def torchrun_embed(nproc: int, run: Path, data: Path) -> dict:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    result = subprocess.run(
        # torchrun's own parser takes --run: `--` hands the rest to mmpt
        [
            torchrun,
            f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}",
            "-m",
            "mmpt",
            "--",
            "embed",
            "--run",
            str(run),
            "--data",
            str(data),
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--chunk-rows",
            "16",
            "--quiet",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def columns(data: Path) -> dict[str, list]:
    ds = lance.dataset(data)
    return {c: ds.to_table(columns=["id", c]).to_pylist() for c in ds.schema.names if c.startswith("emb_")}


def test_shards_cover_the_rows_once_in_order():
    rows = np.arange(11)
    parts = [shard(rows, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 3]
    assert np.concatenate(parts).tolist() == rows.tolist()


def test_two_ranks_write_what_one_rank_writes_in_one_commit_per_column(setup, tmp_path):
    demo, run = setup
    one, two = tmp_path / "one.lance", tmp_path / "two.lance"
    shutil.copytree(demo, one)
    shutil.copytree(demo, two)
    single = torchrun_embed(1, run, one)
    double = torchrun_embed(2, run, two)
    assert {m: c["rows"] for m, c in double["columns"].items()} == {
        m: c["rows"] for m, c in single["columns"].items()
    }
    assert double["version"] == single["version"] == lance.dataset(demo).version + 3  # one commit per column
    got, want = columns(two), columns(one)
    assert sorted(got) == sorted(want) == ["emb_run_audio", "emb_run_image", "emb_run_text"]
    for column, rows in want.items():
        for mine, theirs in zip(got[column], rows, strict=True):
            assert mine["id"] == theirs["id"] and (mine[column] is None) == (theirs[column] is None)
            if theirs[column] is not None:
                np.testing.assert_allclose(mine[column], theirs[column], rtol=1e-5, atol=1e-6)
    assert lance.dataset(two).tags.list()["emb-run"]["version"] == double["version"]


def test_two_ranks_resume_from_staged_rows(setup, tmp_path):
    demo, run = setup
    data = tmp_path / "resume.lance"
    shutil.copytree(demo, data)
    # what a crashed run leaves: some text vectors staged, nothing committed
    texts = lance.dataset(data).count_rows(filter="text IS NOT NULL")
    ids = lance.dataset(data).to_table(columns=["id"], filter="text IS NOT NULL")["id"].to_pylist()[:10]
    writer = EmbeddingWriter(str(data), "run", "text", 128)
    writer.add(ids, np.full((10, 128), 0.5, np.float32))
    report = torchrun_embed(2, run, data)
    assert report["columns"]["text"]["written"] == report["columns"]["text"]["rows"] == texts
    text = lance.dataset(data).to_table(
        columns=["id", "emb_run_text"], filter="id IN ('" + "','".join(ids) + "')"
    )
    assert all(np.allclose(v, 0.5) for v in text["emb_run_text"].to_pylist())  # staged rows were not redone
    assert not Path(staging_uri(str(data), "emb_run_text")).exists()
