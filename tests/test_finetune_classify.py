"""Supervised fine-tuning: a linear head on tower embeddings (probe and LP-FT), its report and bad labels."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file

from mmpt.errors import DataError
from mmpt.models import build_model, preset_config, save_model
from mmpt.store.synthetic import make_demo_dataset
from mmpt.train.classify import class_weights, load_classifier
from mmpt.train.finetune import finetune, resolve_finetune_config

QUICK = ["data.num_workers=0", "train.warmup_steps=2", "train.log_every=1"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A randomly initialised tiny model saved as an mmpt checkpoint folder (a valid --from)."""
    torch.manual_seed(0)
    return save_model(build_model(preset_config("tiny")), tmp_path_factory.mktemp("cls") / "random")


@pytest.fixture(scope="module")
def odd_labels(tmp_path_factory):
    """A small demo dataset with a one-class column and a column whose test split holds an unseen label."""
    ds = make_demo_dataset(tmp_path_factory.mktemp("cls") / "odd.lance", n_rows=120, seed=1)
    t = ds.lance.to_table(columns=["id", "split", "colour"])
    odd = [
        "crimson" if s == "test" and c == "red" else c
        for s, c in zip(t["split"].to_pylist(), t["colour"].to_pylist(), strict=True)
    ]
    ds.lance.merge(pa.table({"id": t["id"], "const": ["x"] * len(t), "odd": odd}), left_on="id")
    return ds.uri, odd.count("crimson")


def _classify(source, data, **finetune):
    return resolve_finetune_config(
        source=str(source),
        data=str(data),
        overrides=QUICK,
        finetune={"task": "classify", **finetune},
        max_steps=4,
        batch_size=32,
    )


def test_probe_on_frozen_towers_reports_every_metric(source, demo_dataset, tmp_path):
    run = tmp_path / "probe"
    result = finetune(_classify(source, demo_dataset.uri, label_col="colour"), run, progress=False)
    r = result.after["linear_probe"]["image+audio"]
    assert r["mode"] == "probe" and r["classes"] == ["blue", "green", "purple", "red", "yellow"]
    assert r["accuracy"] > 0.5 and r["macro_f1"] > 0.4 and r["roc_auc"] > 0.8  # chance is 0.2
    assert len(r["confusion_matrix"]) == 5 and set(r["per_class"]["red"]) >= {"precision", "recall"}
    assert set(r["roc_curves"]) <= set(r["classes"]) and r["roc_curves"]
    saved = json.loads((run / "eval" / "final.json").read_text())
    assert saved["meta"]["task"] == "classify" and (run / "eval" / "final.html").is_file()
    # the towers did not move; the head reloads and reproduces the test predictions' classes
    init = load_file(str(source / "model.safetensors"))
    model, head, meta = load_classifier(run)
    assert all(torch.equal(v, init[k]) for k, v in model.state_dict().items() if k in init)
    assert meta["classes"] == r["classes"] and head.towers == ["image", "audio"]
    assert any(
        e["kind"] == "val" and "val_accuracy" in e for e in map(json.loads, open(run / "metrics.jsonl"))
    )


def test_full_fine_tune_trains_the_towers_after_the_probe(source, demo_dataset, tmp_path):
    run = tmp_path / "full"
    cfg = _classify(source, demo_dataset.uri, label_col="colour", head="full", towers=["audio"])
    cfg.data.val_split = ""  # no best-epoch restore: the final towers are the trained ones
    assert cfg.train.lr == 1e-5  # the LP-FT default rate
    result = finetune(cfg, run, progress=False)
    r = result.after["linear_probe"]["audio"]
    assert r["mode"] == "full" and r["accuracy"] > 0.5
    events = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [e["kind"] for e in events][:2] == ["probe", "train"] and events[-1] == {
        **events[-1],
        "kind": "end",
        "step": 4,
    }
    init = load_file(str(source / "model.safetensors"))
    trained = load_classifier(run)[0].state_dict()
    assert not torch.equal(trained["audio.vit.head.weight"], init["audio.vit.head.weight"])
    assert torch.equal(trained["clip.visual.proj"], init["clip.visual.proj"])  # not a classifier input


def test_balanced_class_weights():
    w = class_weights(["a", "a", "a", "b"], ["a", "b"], "balanced")
    assert torch.allclose(w, torch.tensor([4 / 6, 4 / 2]))
    assert class_weights(["a", "b"], ["a", "b"], "none") is None


def test_single_class_column_is_refused(source, odd_labels, tmp_path):
    uri, _ = odd_labels
    with pytest.raises(DataError, match="label column 'const' has a single class 'x' in split 'train'"):
        finetune(_classify(source, uri, label_col="const"), tmp_path / "one", progress=False)


def test_unseen_test_labels_are_reported_not_fatal(source, odd_labels, tmp_path):
    uri, n_crimson = odd_labels
    result = finetune(
        _classify(source, uri, label_col="odd", towers=["audio"]), tmp_path / "unseen", progress=False
    )
    r = result.after["linear_probe"]["audio"]
    assert n_crimson > 0 and r["unseen_test_labels"] == {"crimson": r["n_unseen"]} and r["n_unseen"] > 0
    assert r["accuracy"] is not None and "crimson" not in r["classes"]
