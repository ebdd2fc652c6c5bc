"""kill -9 at chosen and at random moments of a first ingest, an append and an embed (real subprocesses).

After every kill: the dataset opens (when a version was ever committed), the previous version reads back
unchanged, ids are unique and `data verify` passes; then a rerun completes and gives the same rows (or
embedding vectors) as an uninterrupted run.
"""

from __future__ import annotations

import random
import shutil
import sys

import fault_tally
import lance
import numpy as np
import pytest
import torch
from fault_support import (
    HOOKED_EMBED,
    duplicates,
    hooked,
    intact,
    kill_at,
    mmpt,
    snapshot,
    start,
)

from mmpt.models import build_model, preset_config, save_model
from mmpt.store.integrity import check_latest
from mmpt.store.synthetic import make_demo_dataset, write_demo_files

ROW_COLUMNS = ["id", "text", "label", "split", "image_sha256", "audio_sha256", "colour", "shape"]
RNG = random.Random(14)  # the "random" kill moments, reproducible


def rows(uri) -> list[dict]:
    """Every non-blob value of the dataset, sorted by id: what 'the same rows' compares."""
    return sorted(lance.dataset(str(uri)).to_table(columns=ROW_COLUMNS).to_pylist(), key=lambda r: r["id"])


def ingest_args(manifest, out, *extra) -> list:
    return ["ingest", manifest, "--out", out, "-q", "--batch-rows", "4", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    """Two demo manifests with media files: rows 0-39 and rows 40-79 (for the append)."""
    root = tmp_path_factory.mktemp("kill_files")
    return write_demo_files(root / "first", 40), write_demo_files(root / "second", 40, start=40)


def check_after_kill(uri, history: dict[int, list[str]]) -> int:
    """Invariant violations of a dataset just after a kill (0 when all hold)."""
    version, ids = snapshot(uri)
    verified = check_latest(str(uri)).ok  # what `mmpt data verify` checks, in-process
    return len(intact(uri, history)) + bool(duplicates(ids)) + (not verified) + (version < max(history))


def test_killed_first_ingest_leaves_nothing_or_everything_and_reruns(manifests, tmp_path):
    first, _ = manifests
    reference = tmp_path / "reference.lance"
    assert mmpt(*ingest_args(first, reference)).returncode == 0
    moments = [("batch", 3, None), ("commit", 1, None), ("committed", 1, None)]
    moments += [(None, 1, RNG.uniform(0.5, 3.0)) for _ in range(2)]
    violations = 0
    for k, (marker, nth, after) in enumerate(moments):
        out = tmp_path / f"first{k}.lance"
        what = kill_at(start(hooked(ingest_args(first, out), slow=0.1)), marker, nth, after)
        committed = (out / "_versions").is_dir()
        if marker == "committed":
            assert committed, what
        if marker in ("batch", "commit"):
            assert not committed, what
        if committed:  # the commit landed before the kill: the whole input is there
            violations += rows(out) != rows(reference) or check_after_kill(out, {1: snapshot(reference)[1]})
        else:  # nothing was committed: a rerun creates the dataset (leftover files do not block it)
            result = mmpt(*ingest_args(first, out))
            assert result.returncode == 0, (what, result.stderr)
        violations += rows(out) != rows(reference)
    fault_tally.record("kills", len(moments), int(violations))
    assert violations == 0


def test_killed_append_keeps_the_previous_version_and_reruns(manifests, tmp_path):
    first, second = manifests
    base = tmp_path / "base.lance"
    assert mmpt(*ingest_args(first, base)).returncode == 0
    reference = tmp_path / "reference.lance"
    shutil.copytree(base, reference)
    assert mmpt(*ingest_args(second, reference, "--append")).returncode == 0
    history = dict([snapshot(base)])
    moments = [("batch", 1, None), ("batch", 6, None), ("commit", 1, None), ("committed", 1, None)]
    moments += [(None, 1, RNG.uniform(0.5, 3.0)) for _ in range(3)]
    violations = 0
    for k, (marker, nth, after) in enumerate(moments):
        out = tmp_path / f"append{k}.lance"
        shutil.copytree(base, out)
        what = kill_at(start(hooked(ingest_args(second, out, "--append"), slow=0.1)), marker, nth, after)
        violations += check_after_kill(out, history)
        version = snapshot(out)[0]
        assert version == (2 if marker == "committed" else 1 if marker else version), what
        rerun = mmpt(*ingest_args(second, out, "--append"))
        if version == 1:
            assert rerun.returncode == 0, (what, rerun.stderr)
        else:  # it had committed: a rerun refuses the ids already there, in one line
            assert rerun.returncode == 1 and "is already in" in rerun.stderr, (what, rerun.stderr)
        violations += rows(out) != rows(reference) or check_after_kill(out, history)
    fault_tally.record("kills", len(moments), int(violations))
    assert violations == 0


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A randomly initialised tiny model saved as a checkpoint (embedding needs no training to be checked)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("kill_run")
    return save_model(build_model(preset_config("tiny")), root / "run" / "checkpoints" / "step-0000001")


def embed_args(run, data) -> list[str]:
    return [
        sys.executable, "-c", HOOKED_EMBED, "embed", "--run", str(run), "--data", str(data),
        "--device", "cpu", "--quiet", "--chunk-rows", "16", "--batch-size", "8",
    ]  # fmt: skip


def vectors(uri, column: str) -> dict[str, np.ndarray]:
    table = lance.dataset(str(uri)).to_table(columns=["id", column], filter=f"`{column}` IS NOT NULL")
    pairs = zip(table["id"].to_pylist(), table[column].to_pylist(), strict=True)
    return {i: np.asarray(v, np.float32) for i, v in pairs}


def test_killed_embed_resumes_to_identical_vectors(model_run, tmp_path):
    data = make_demo_dataset(tmp_path / "demo.lance", n_rows=64, seed=1).uri
    reference = tmp_path / "reference.lance"
    shutil.copytree(data, reference)
    result = mmpt("embed", "--run", model_run, "--data", reference, "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    columns = [c for c in lance.dataset(str(reference)).schema.names if c.startswith("emb_")]
    assert len(columns) == 3

    out = tmp_path / "killed.lance"
    shutil.copytree(data, out)
    history = dict([snapshot(out)])
    moments = [("staged", 2, None), ("committed", 1, None), (None, 1, RNG.uniform(3.0, 8.0))]
    violations, kills = 0, 0
    for marker, nth, after in moments:
        what = kill_at(start(embed_args(model_run, out)), marker, nth, after)
        kills += what != "finished"
        violations += check_after_kill(out, history)
        now = lance.dataset(str(out))
        history[now.version] = snapshot(out)[1]
        for column in [c for c in now.schema.names if c.startswith("emb_")]:
            # a column is there whole or not at all: every row holding the modality has its vector
            want = vectors(reference, column)
            violations += set(vectors(out, column)) != set(want)
    result = mmpt("embed", "--run", model_run, "--data", out, "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    worst = 0.0
    for column in columns:
        got, want = vectors(out, column), vectors(reference, column)
        assert set(got) == set(want)
        worst = max(worst, max(float(np.abs(got[i] - want[i]).max()) for i in want))
    violations += worst > 1e-5
    fault_tally.record("kills", kills, int(violations))
    assert violations == 0 and kills >= 2, (worst, kills)
