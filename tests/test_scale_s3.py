"""Object stores end to end: ingest, pretrain, embed and search on an s3:// dataset served by a local moto server.

The commands are those of docs/scale.md: the CLI reads the endpoint and keys from the AWS_* environment; the
Python API takes the same settings as `storage_options`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from s3_support import moto_s3

from mmpt.api import embed as mmpt_embed
from mmpt.api import search as mmpt_search
from mmpt.embed.api import embed_run, search_run
from mmpt.errors import ConfigError, DataError
from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest
from mmpt.store.synthetic import write_demo_files


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


def mmpt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "mmpt", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_cli_ingest_pretrain_embed_search_on_s3(s3, tmp_path):
    manifest = write_demo_files(tmp_path / "files", n_rows=48, seed=0)
    uri = s3.uri("corpus.lance")
    run = tmp_path / "run"

    out = mmpt(["ingest", str(manifest), "--out", uri, "--quiet", "--json"], s3.env)
    assert json.loads(out.stdout)["written"] == 48
    mmpt(
        [
            "pretrain",
            "--data",
            uri,
            "--run",
            str(run),
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--max-steps",
            "2",
            "--batch-size",
            "8",
            "--num-workers",
            "0",
            "--quiet",
            "--set",
            "train.eval_after=false",
        ],
        s3.env,
    )
    out = mmpt(["embed", "--run", str(run), "--data", uri, "--device", "cpu", "--quiet", "--json"], s3.env)
    columns = json.loads(out.stdout)["columns"]
    assert columns["image"]["rows"] > 0 and columns["text"]["rows"] == 48
    out = mmpt(
        [
            "search",
            "a red circle",
            "--run",
            str(run),
            "--data",
            uri,
            "--modality",
            "image",
            "-k",
            "3",
            "--json",
        ],
        s3.env,
    )
    assert len(json.loads(out.stdout)) == 3

    # Read back without the environment, through storage_options: rows, bytes and vectors are all there.
    ds = open_dataset(uri, storage_options=s3.storage_options)
    assert len(ds) == 48 and ds.version == 4  # ingest + one commit per embedding column
    table = ds.lance.to_table(columns=["id", "image_sha256", "emb_run_text"])
    blobs = ds.read_blobs("image", range(len(ds)))
    for digest, blob in zip(table["image_sha256"].to_pylist(), blobs, strict=True):
        assert digest == (None if blob is None else hashlib.sha256(blob).hexdigest())
    assert table["emb_run_text"].null_count == 0
    report = s3.client().get_object(Bucket=s3.bucket, Key="corpus.report.json")["Body"].read()
    assert json.loads(report)["totals"] == {"read": 48, "written": 48, "rejected": 0}


def test_embed_run_writes_columns_through_storage_options(s3, tmp_path, tiny_s3_run, monkeypatch):
    manifest = write_demo_files(tmp_path / "files", n_rows=16, seed=2)
    uri = s3.uri("embed.lance")
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    ingest(manifest, uri, quiet=True, storage_options=s3.storage_options)
    for name in s3.env:
        monkeypatch.delenv(name)
    with pytest.raises(DataError):  # without the settings the server is out of reach
        open_dataset(uri)
    ds = open_dataset(uri, storage_options=s3.storage_options)
    written = embed_run(tiny_s3_run, ds, ["text"], device="cpu", progress=False, chunk_rows=8)
    assert written == {"text": 16}
    again = open_dataset(uri, storage_options=s3.storage_options)
    assert again.lance.count_rows(filter="emb_run_text IS NOT NULL") == 16
    assert "emb-run" in again.lance.tags.list()

    # search too, still without the environment: image embedding on demand, a vector index (threshold 1), a row query
    found = mmpt_search(tiny_s3_run, again, "a red circle", modality="image", k=3, device="cpu")
    assert len(found) == 3  # the top-level API takes the handle as it is, storage options and all
    with pytest.raises(ConfigError, match="path or URI"):
        mmpt_embed(tiny_s3_run, again, background=True)
    again = open_dataset(uri, storage_options=s3.storage_options)
    assert again.lance.count_rows(filter="emb_run_image IS NOT NULL") > 0
    first = again.lance.to_table(columns=["id"]).column(0)[0].as_py()
    near = search_run(
        tiny_s3_run,
        again,
        row_id=first,
        modality="text",
        k=2,
        index_threshold=1,
        device="cpu",
        progress=False,
    )
    assert len(near) == 2 and first not in [h.id for h in near]


@pytest.fixture(scope="module")
def tiny_s3_run(tiny_run):
    """The session's tiny run, local (its weights are what the remote datasets are embedded with)."""
    return tiny_run
