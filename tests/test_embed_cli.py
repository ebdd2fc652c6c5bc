"""`mmpt embed`, `mmpt search`, `mmpt project` from the command line: outputs, exports, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import duckdb
import lance
import numpy as np
import pandas as pd
import pytest

from mmpt.cli import main
from mmpt.models import build_model, preset_config, save_model

HIT_KEYS = {"id", "score", "text", "label", "split"}


def mmpt(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "mmpt", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in this process (cheaper than a subprocess): exit code, stdout, stderr."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def data(demo_dataset, tmp_path) -> str:
    path = tmp_path / "demo.lance"
    shutil.copytree(demo_dataset.uri, path)
    return str(path)


def test_embed_export_then_search_from_the_command_line(tiny_run, data, tmp_path):
    out = tmp_path / "emb.parquet"
    res = mmpt(
        "embed",
        "--run",
        tiny_run,
        "--data",
        data,
        "--modalities",
        "image,audio",
        "--batch-size",
        64,
        "--to",
        "parquet",
        "--path",
        out,
        "--json",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    ds = lance.dataset(data)
    holding = {m: ds.count_rows(filter=f"{m} IS NOT NULL") for m in ("image", "audio")}
    assert report["name"] == "run" and report["tag"] == "emb-run" and report["version"] == ds.version
    assert {m: c["written"] for m, c in report["columns"].items()} == holding
    assert report["columns"]["audio"]["column"] == "emb_run_audio"

    frame = pd.read_parquet(report["export"])  # the export reads in pandas and DuckDB
    assert list(frame.columns) == ["id", "label", "split", "emb_run_image", "emb_run_audio"]
    assert frame["emb_run_image"].notna().sum() == holding["image"]
    vectors = np.stack(frame["emb_run_image"].dropna().to_numpy())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    count = duckdb.sql(f"SELECT count(*) FROM '{out}' WHERE emb_run_audio IS NOT NULL").fetchall()[0][0]
    assert count == holding["audio"]

    res = mmpt(
        "search", "--run", tiny_run, "--data", data, "a red circle", "--modality", "audio", "-k", 5, "--json"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    hits = json.loads(res.stdout)
    assert len(hits) == 5 and all(set(h) == HIT_KEYS for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    row = ds.to_table(columns=["id"], filter="image IS NOT NULL AND audio IS NOT NULL", limit=1)["id"][
        0
    ].as_py()
    res = mmpt(
        "search",
        "--run",
        tiny_run,
        "--data",
        data,
        "--id",
        row,
        "--from-modality",
        "image",
        "--modality",
        "audio",
        "-k",
        3,
        "--split",
        "train",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == ["score", "id", "label", "split", "text"] and len(lines) == 4
    assert all(" train " in line and row not in line for line in lines[1:])

    # text was not embedded: searching it embeds it first, then answers
    res = mmpt(
        "search", "--run", tiny_run, "--data", data, "a red circle", "--modality", "text", "-k", 2, "--json"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(json.loads(res.stdout)) == 2
    assert lance.dataset(data).count_rows(filter="emb_run_text IS NOT NULL") == ds.count_rows(
        filter="text IS NOT NULL"
    )


def test_embed_again_writes_nothing_and_exports_npy(tiny_run, data, tmp_path, capsys):
    code, out, err = run_cli(
        capsys,
        "embed",
        "--run",
        tiny_run,
        "--data",
        data,
        "--modalities",
        "text",
        "--name",
        "tiny-1",
        "--quiet",
    )
    assert code == 0, err
    rows = lance.dataset(data).count_rows(filter="text IS NOT NULL")
    assert f"emb_tiny-1_text: {rows} rows written, {rows} embedded in all" in out
    code, out, err = run_cli(
        capsys,
        "embed",
        "--run",
        tiny_run,
        "--data",
        data,
        "--modalities",
        "text",
        "--name",
        "tiny-1",
        "--quiet",
        "--to",
        "npy",
        "--path",
        tmp_path / "npy",
    )
    assert code == 0, err
    assert f"emb_tiny-1_text: 0 rows written, {rows} embedded in all" in out
    assert np.load(tmp_path / "npy" / "text.npy").shape == (rows, 128)


def test_project_is_cached_and_reused(tiny_run, data, capsys):
    args = (
        "project",
        "--run",
        tiny_run,
        "--data",
        data,
        "--modality",
        "image",
        "--method",
        "pca",
        "--clusters",
        4,
        "--json",
        "--quiet",
    )
    code, out, err = run_cli(capsys, *args)  # embeds the images first, then projects
    assert code == 0, err
    first = json.loads(out)
    holding = lance.dataset(data).count_rows(filter="image IS NOT NULL")
    assert first["column"] == "proj_run_image_pca" and first["rows"] == holding and not first["cached"]
    assert (
        first["clusters"]["column"] == "cluster_run_image_k4" and sum(first["clusters"]["sizes"]) == holding
    )
    code, out, err = run_cli(capsys, *args)
    again = json.loads(out)
    assert again["cached"] and again["clusters"]["cached"] and again["x"] == first["x"]
    code, out, err = run_cli(capsys, *args[:-2])
    assert code == 0 and "proj_run_image_pca: " in out and "reused from cache" in out


def test_bad_input_is_one_line(tiny_run, data, tmp_path, capsys):
    cfg = preset_config("tiny")
    cfg.modalities = ["image", "text"]
    ckpt = save_model(build_model(cfg), tmp_path / "two" / "checkpoints" / "step-0000001")
    cases = [
        (
            ("embed", "--run", ckpt, "--data", data, "--modalities", "audio"),
            "run two-step-0000001's model has no audio tower; it embeds image, text",
        ),
        (("search", "--run", tiny_run, "--data", data, "", "--modality", "image"), "empty query"),
        (("search", "--run", tiny_run, "--data", data, "--modality", "image"), "give exactly one query"),
        (
            ("search", "--run", tiny_run, "--data", data, "a cat", "--modality", "image", "-k", 5000),
            "k=5000 is larger than the",
        ),
        (
            ("search", "--run", ckpt, "--data", data, "a dog barking", "--modality", "audio"),
            "has no audio tower",
        ),
        (("embed", "--run", tiny_run, "--data", data, "--to", "npy"), "--to and --path go together"),
        (
            ("project", "--run", tiny_run, "--data", tmp_path / "none.lance", "--modality", "image"),
            "dataset not found",
        ),
    ]
    for args, message in cases:
        code, out, err = run_cli(capsys, *args, "--quiet")
        assert code == 1, (args, out, err)
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
