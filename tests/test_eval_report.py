"""The assembled eval report: exact keys, what runs for which modalities, saving, flattening, summary."""

import json

import numpy as np
import pytest

from mmpt.eval.report import (
    build_report,
    evaluate_embeddings,
    flatten,
    format_report,
    load_report,
    save_report,
)

LABELS = ["red circle", "blue square", "green star"]
PROMPT = "a photo of a {label}"


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def split_embeddings(modalities, n: int = 30, seed: int = 0, labels=LABELS, dim: int = 16):
    """Rows of three label clusters; every modality of a row sits near the same row-specific point."""
    rng = np.random.default_rng(seed)
    centres = np.eye(len(labels), dim) * 3
    idx = [i % len(labels) for i in range(n)]
    rows = centres[idx] + rng.normal(size=(n, dim))
    ids = [f"s{seed}-{i}" for i in range(n)]
    row_labels = [labels[i] for i in idx]
    return {m: (ids, row_labels, unit(rows + 0.05 * rng.normal(size=(n, dim)))) for m in modalities}


def encode_prompts(texts: list[str]) -> np.ndarray:
    centres = np.eye(len(LABELS), 16)
    return unit(np.stack([centres[LABELS.index(t.removeprefix("a photo of a "))] for t in texts]))


def test_all_three_modalities_give_exactly_the_contract_keys():
    embs = split_embeddings(["image", "text", "audio"])
    train = split_embeddings(["image", "audio"], n=45, seed=1)
    meta = {"run": "runs/a", "dataset": "demo.lance", "version": 3, "split": "test"}
    report = evaluate_embeddings(embs, encode_prompts, train, prompt=PROMPT, meta=meta)
    assert set(report) == {"zero_shot", "retrieval", "label_match", "linear_probe", "meta"}
    assert set(report["zero_shot"]) == {"image", "audio"}
    pairs = {f"{q}_to_{t}" for q in ("image", "text", "audio") for t in ("image", "text", "audio") if q != t}
    assert set(report["retrieval"]) == pairs
    assert set(report["label_match"]) == pairs | {"image_to_image", "text_to_text", "audio_to_audio"}
    assert set(report["linear_probe"]) == {"image", "audio"}
    flat = flatten(report)
    expected = {f"zero_shot.{m}.{k}" for m in ("image", "audio") for k in ("accuracy", "macro_f1")}
    expected |= {f"retrieval.{p}.{k}" for p in pairs for k in ("r@1", "r@5", "r@10")}
    expected |= {f"label_match.{p}.p@1" for p in pairs}
    assert expected <= set(flat)
    assert all(isinstance(v, int | float) for v in flat.values())
    assert not any("per_class" in k or "confusion" in k or k.startswith("meta.") for k in flat)
    assert report["zero_shot"]["image"]["accuracy"] == 1.0
    assert report["retrieval"]["image_to_text"]["r@1"] == 1.0
    assert report["linear_probe"]["audio"]["accuracy"] >= 0.9
    m = report["meta"]
    assert (m["run"], m["dataset"], m["version"], m["split"], m["prompt"]) == (
        "runs/a",
        "demo.lance",
        3,
        "test",
        PROMPT,
    )
    assert m["n_rows"] == {"image": 30, "text": 30, "audio": 30} and m["skipped"] == []
    assert {"time", "mmpt_version", "class_names"} <= set(m)
    json.dumps(report, allow_nan=False)


def test_only_what_applies_is_computed():
    embs = split_embeddings(["image", "audio"])
    report = evaluate_embeddings(embs)  # no text encoder: no zero-shot
    assert report["zero_shot"] == {} and report["linear_probe"] == {}
    assert set(report["retrieval"]) == {"image_to_audio", "audio_to_image"}
    unlabelled = {m: (ids, [None] * len(ids), e) for m, (ids, _, e) in embs.items()}
    report = evaluate_embeddings(unlabelled, encode_prompts)
    assert report["zero_shot"] == {} and report["label_match"] == {}
    assert set(report["retrieval"]) == {"image_to_audio", "audio_to_image"}


def test_single_class_and_unseen_labels_are_reported_not_raised():
    embs = split_embeddings(["image", "text"], labels=["only"])
    train = split_embeddings(["image"], labels=["only"], seed=2)
    report = evaluate_embeddings(embs, encode_prompts, train)
    assert report["zero_shot"] == {} and report["label_match"] == {} and report["linear_probe"] == {}
    skipped = "\n".join(report["meta"]["skipped"])
    assert "single class 'only'" in skipped and "linear_probe.image" in skipped
    assert "skipped" in format_report(report)

    train = split_embeddings(["image"], n=30, seed=3, labels=["red circle", "blue square"])
    report = evaluate_embeddings(split_embeddings(["image"]), None, train)
    assert report["linear_probe"]["image"]["unseen_test_labels"] == {"green star": 10}


def test_build_report_checks_pair_keys_and_stamps_meta():
    report = build_report(retrieval={"image_to_text": {"r@1": 0.5}}, meta={"run": "r"})
    assert report["zero_shot"] == {} and report["meta"]["run"] == "r" and "time" in report["meta"]
    assert flatten(report) == {"retrieval.image_to_text.r@1": 0.5}
    with pytest.raises(ValueError, match="_to_"):
        build_report(retrieval={"image-text": {"r@1": 0.5}})


def test_save_report_writes_run_eval_json_atomically(tmp_path):
    report = evaluate_embeddings(split_embeddings(["image", "text"]), encode_prompts, prompt=PROMPT)
    path = save_report(report, tmp_path / "run", "test")
    assert path == tmp_path / "run" / "eval" / "test.json"
    assert load_report(path) == json.loads(json.dumps(report))
    assert [p.name for p in path.parent.iterdir()] == ["test.json"]
    with pytest.raises(ValueError):
        save_report(report, tmp_path, "../escape")


def test_format_report_has_one_line_per_figure():
    report = evaluate_embeddings(
        split_embeddings(["image", "text"]),
        encode_prompts,
        prompt=PROMPT,
        meta={"run": "r1", "split": "test"},
    )
    text = format_report(report)
    assert text.splitlines()[0].startswith("eval  run=r1  split=test")
    assert "zero-shot     image" in text and "acc 1.000" in text
    assert "retrieval     image_to_text  R@1 1.000" in text
    assert "label match   text_to_image" in text


def test_prompts_per_modality_are_encoded_once_each():
    seen: list[str] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return unit(np.stack([np.eye(3, 16)[LABELS.index(t.split(" of a ")[-1])] for t in texts]))

    prompts = {"image": "a photo of a {label}", "audio": "the sound of a {label}"}
    report = evaluate_embeddings(split_embeddings(["image", "text", "audio"]), encode, prompt=prompts)
    assert sorted(seen) == sorted(
        [f"a photo of a {x}" for x in LABELS] + [f"the sound of a {x}" for x in LABELS]
    )
    assert report["zero_shot"]["audio"]["accuracy"] >= 0.9 and report["meta"]["prompt"] == prompts
