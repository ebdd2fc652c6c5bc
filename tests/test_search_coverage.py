"""A search right after an append covers only the rows the run embedded before it: the CLI, the Python API
result and `mmpt.embed.search` say how many rows were left out and how to add them."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import mmpt
from mmpt.cli import main
from mmpt.embed.api import embed_run, search_text
from mmpt.embed.search import coverage, search
from mmpt.models import build_model, preset_config, save_model
from mmpt.store.ingest import ingest


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A text-only dataset of 40 rows embedded by a random tiny model, then 15 rows appended."""
    root = tmp_path_factory.mktemp("coverage")
    torch.manual_seed(0)
    ckpt = save_model(build_model(preset_config("tiny")), root / "run" / "checkpoints" / "step-0000001")
    uri = str(root / "c.lance")
    ingest(pd.DataFrame({"id": [f"a{i}" for i in range(40)], "text": [f"a red thing {i}" for i in range(40)]}), uri, quiet=True)  # fmt: skip
    embed_run(ckpt, uri, ["text"], device="cpu", progress=False)
    more = pd.DataFrame(
        {"id": [f"b{i}" for i in range(15)], "text": [f"a blue thing {i}" for i in range(15)]}
    )
    ingest(more, uri, append=True, quiet=True)
    return ckpt, uri


def test_search_after_an_append_says_how_many_rows_it_left_out(setup, capsys, caplog):
    ckpt, uri = setup
    name = "run-step-0000001"
    hits = search_text(ckpt, uri, "a blue thing", modality="text", k=5, device="cpu", progress=False)
    assert len(hits) == 5 and all(h.id.startswith("a") for h in hits)  # the appended rows are not searched
    assert hits.coverage.embedded == 40 and hits.coverage.missing == 15
    assert hits.note == (
        f"15 rows without embeddings for run {name} were not searched; `mmpt embed --run {ckpt}` to add them"
    )
    # logged as a warning too (the CLI has no handler of its own: Python's last-resort one prints it on stderr)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [hits.note]
    caplog.clear()

    column = f"emb_{name}_text"
    low_level = search(uri, column, hits_vector(uri, column), k=3)[0]
    assert low_level.coverage == coverage(uri, column) and low_level.note.startswith("15 rows without")
    assert (
        coverage(uri, column, "id LIKE 'b%'").missing == 15
        and coverage(uri, column, "id = 'a1'").missing == 0
    )

    frame = mmpt.search(ckpt, uri, "a blue thing", modality="text", k=3, device="cpu")
    assert frame.attrs["note"] == hits.note

    try:
        main(["search", "--run", str(ckpt), "--data", uri, "a blue thing", "--modality", "text", "--quiet"])
    except SystemExit as exc:
        assert not exc.code
    assert "score" in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][-1] == hits.note


def test_no_note_once_every_row_is_embedded(setup, tmp_path):
    import shutil

    ckpt, uri = setup
    copy = str(tmp_path / "c.lance")
    shutil.copytree(uri, copy)
    embed_run(ckpt, copy, ["text"], device="cpu", progress=False)
    hits = search_text(ckpt, copy, "a blue thing", modality="text", k=5, device="cpu", progress=False)
    assert hits.note is None and hits.coverage.missing == 0 and hits.coverage.embedded == 55
    assert any(h.id.startswith("b") for h in hits)


def hits_vector(uri: str, column: str):
    import lance
    import numpy as np

    return np.asarray(lance.dataset(uri).to_table(columns=[column], limit=1)[column][0].as_py(), np.float32)
