"""Standard protocols (`mmpt eval --protocol`): the fold and caption figures on hand-made embeddings, and each
protocol end to end on a tiny dataset in its layout, beside the published numbers."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmpt.cli import main
from mmpt.errors import ConfigError, DataError
from mmpt.eval.protocol_run import caption_report, fold_report, format_protocol, protocol_table
from mmpt.eval.protocols import PROTOCOLS, get_protocol
from mmpt.models import build_model, preset_config, save_model
from mmpt.store.ingest import ingest

RECIPES = Path(__file__).resolve().parents[1] / "datasets"


def test_every_protocol_cites_its_published_figures():
    assert set(PROTOCOLS) == {"esc50", "urbansound8k", "audiocaps", "clotho", "coco", "flickr30k"}
    for protocol in PROTOCOLS.values():
        assert protocol.references, protocol.name
        for ref in protocol.references:
            assert ref.metric in protocol.metrics and 0 < ref.value <= 100
            assert "arXiv:" in ref.source and ref.model
    esc50 = get_protocol("ESC50")
    assert esc50.prompt == "This is a sound of {label}" and esc50.folds == 5
    assert get_protocol("audiocaps").references[0].value == 36.1  # text -> audio R@1 (LAION-CLAP, Table 3)
    with pytest.raises(ConfigError, match="unknown protocol 'imagenet'; choose one of esc50"):
        get_protocol("imagenet")


def _prompt_encoder(vectors: dict[str, list[float]]):
    """Texts -> fixed vectors; an unexpected text (a wrong prompt) fails the test with its spelling."""
    return lambda texts: np.array([vectors[t] for t in texts], dtype=np.float32)


def test_fold_figure_is_the_mean_over_folds_with_clap_prompts():
    encode = _prompt_encoder({"This is a sound of dog bark": [1, 0], "This is a sound of siren": [0, 1]})
    ids = ["a", "b", "c", "d", "e", "f"]
    labels = ["dog_bark", "siren", "dog_bark", "siren", "siren", None]
    emb = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    folds = {"a": 1, "b": 1, "c": "2", "d": 2.0, "e": 2, "f": 7}  # f has no label: takes no part
    protocol = get_protocol("urbansound8k")
    entry, notes = fold_report(protocol, ids, labels, emb, folds, encode)
    # fold 1: both right; fold 2: one of three right -> mean (1 + 1/3) / 2; pooled 3 of 5
    assert entry["fold_accuracy"] == pytest.approx({"1": 1.0, "2": 1 / 3})
    assert entry["accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    assert entry["pooled_accuracy"] == pytest.approx(3 / 5) and entry["n"] == 5 and entry["n_folds"] == 2
    assert notes == ["folds 3, 4, 5, 6, 7, 8, 9, 10 have no rows: the published figure averages all 10"]
    with pytest.raises(DataError, match=r"row 'a' has fold 11; expected 1\.\.5"):
        fold_report(get_protocol("esc50"), ids, labels, emb, {**folds, "a": 11}, encode)
    with pytest.raises(DataError, match="no row has a label"):
        fold_report(protocol, ids, [None] * 6, emb, folds, encode)


def test_caption_figures_come_from_every_caption():
    encode = _prompt_encoder({"a1": [1, 0], "a2": [0.6, 0.8], "b1": [0, 1]})
    out, notes = caption_report(
        get_protocol("coco"),
        ["A", "B"],
        np.array([[1, 0], [0, 1]], dtype=np.float32),
        {"A": ["a1", "a2"], "B": ["b1"]},
        encode,
        batch_size=2,
    )
    # a2 scores .8 for B and .6 for A: the only caption missing its item at rank 1
    assert out["text_to_image"]["r@1"] == pytest.approx(2 / 3) and out["text_to_image"]["n_queries"] == 3
    assert out["image_to_text"]["r@1"] == 1.0
    assert notes == ["items have 1 to 2 captions"]
    with pytest.raises(DataError, match="1 of 2 test items have no caption"):
        caption_report(get_protocol("coco"), ["A", "B"], np.eye(2), {"A": ["a1"]}, encode)


# --- end to end: tiny datasets in each layout, a tiny random model ---------------------------------------


def _wav(k: int) -> bytes:
    buf = io.BytesIO()
    tone = 0.2 * np.sin(np.arange(3200) * (k + 1) * 0.03).astype(np.float32)
    sf.write(buf, tone, 16_000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _png(k: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), ((40 * k) % 256, (90 * k) % 256, 128)).save(buf, format="PNG")
    return buf.getvalue()


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _esc50(root: Path) -> str:
    """The official ESC-50 layout (audio/, meta/esc50.csv) through the repository's recipe, then ingest."""
    (root / "ESC-50-master" / "audio").mkdir(parents=True)
    (root / "ESC-50-master" / "meta").mkdir()
    rows = []
    for k in range(10):
        category, target = ("dog", 0) if k % 2 else ("chirping_birds", 14)
        name = f"{k // 2 + 1}-{100000 + k}-A-{target}.wav"
        (root / "ESC-50-master" / "audio" / name).write_bytes(_wav(k))
        rows.append([name, k // 2 + 1, target, category, "False", 100000 + k, "A"])
    header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    _write_csv(root / "ESC-50-master" / "meta" / "esc50.csv", header, rows)
    spec = importlib.util.spec_from_file_location("recipe_esc50", RECIPES / "esc50.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.convert(root / "ESC-50-master", root / "esc50" / "manifest.csv")
    ingest(root / "esc50" / "manifest.csv", root / "esc50.lance", quiet=True)
    return str(root / "esc50.lance")


def _urbansound8k(root: Path) -> str:
    """UrbanSound8K as its metadata CSV names it: class names with underscores, folds 1..10."""
    rows = []
    for k in range(20):
        (root / f"{k}.wav").write_bytes(_wav(k))
        rows.append([f"us-{k}", f"{k}.wav", "dog_bark" if k % 2 else "car_horn", k // 2 + 1, "test"])
    _write_csv(root / "us8k.csv", ["id", "audio", "label", "fold", "split"], rows)
    ingest(root / "us8k.csv", root / "us8k.lance", quiet=True)
    return str(root / "us8k.lance")


def _captioned(root: Path, name: str, modality: str) -> str:
    """Items with five captions each (a JSON list per CSV cell), most in the test split."""
    rows = []
    for k in range(8):
        media = f"{name}-{k}.{'wav' if modality == 'audio' else 'png'}"
        (root / media).write_bytes(_wav(k) if modality == "audio" else _png(k))
        captions = [f"item {k} described {c} ways" for c in range(5)]
        rows.append([f"{name}-{k}", media, json.dumps(captions), "train" if k < 2 else "test"])
    _write_csv(root / f"{name}.csv", ["id", modality, "texts", "split"], rows)
    ingest(root / f"{name}.csv", root / f"{name}.lance", quiet=True)
    return str(root / f"{name}.lance")


def _audioset(root: Path) -> str:
    """Multi-label rows as AudioSet has them: every label of a clip in a `labels` list."""
    classes = ["Speech", "Music", "Dog", "Bark"]
    rows = []
    for k in range(8):
        (root / f"as-{k}.wav").write_bytes(_wav(k))
        labels = [classes[k % 4], classes[(k + 1) % 4]] if k % 2 else [classes[k % 4]]
        rows.append([f"as-{k}", f"as-{k}.wav", json.dumps(labels), "test"])
    _write_csv(root / "audioset.csv", ["id", "audio", "labels", "split"], rows)
    ingest(root / "audioset.csv", root / "audioset.lance", quiet=True)
    return str(root / "audioset.lance")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("layouts")
    audio_caps = _captioned(root, "audiocaps", "audio")
    images = _captioned(root, "coco", "image")
    return {
        "audioset": _audioset(root),
        "esc50": _esc50(root),
        "urbansound8k": _urbansound8k(root),
        "audiocaps": audio_caps,
        "clotho": audio_caps,
        "coco": images,
        "flickr30k": images,
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A checkpoint folder of the tiny preset, untrained: the figures are near chance, the wiring is real."""
    return save_model(build_model(preset_config("tiny")), tmp_path_factory.mktemp("run") / "step-0000001")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


EXPECTED_ITEMS = {"esc50": 10, "urbansound8k": 20, "audiocaps": 6, "clotho": 6, "coco": 6, "flickr30k": 6}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_protocol_runs_on_its_layout(name, layouts, run_dir, capsys):
    protocol = get_protocol(name)
    base = (
        "eval",
        "--run",
        run_dir,
        "--data",
        layouts[name],
        "--protocol",
        name,
        "--device",
        "cpu",
        "--quiet",
    )
    code, out, err = run_cli(capsys, *base, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["protocol"]["name"] == name and report["protocol"]["items"] == EXPECTED_ITEMS[name]
    table = protocol_table(report)
    assert [row["metric"] for row in table] == list(protocol.metrics)
    for row in table:
        assert 0.0 <= row["value"] <= 100.0
    published = {r.metric: r.value for r in protocol.references}
    assert {row["metric"]: row["published"] for row in table if row["published"]} == published
    if protocol.kind == "folds":
        entry = report["zero_shot"]["audio"]
        assert len(entry["fold_accuracy"]) == protocol.folds
        assert entry["accuracy"] == pytest.approx(np.mean(list(entry["fold_accuracy"].values())))
        assert report["meta"]["prompt"] == "This is a sound of {label}"
    else:
        m = protocol.modality
        text_to_item, item_to_text = report["retrieval"][f"text_to_{m}"], report["retrieval"][f"{m}_to_text"]
        assert text_to_item["n_queries"] == 5 * item_to_text["n_queries"] == 5 * 6  # every caption queries
        assert item_to_text["n_targets"] == 30
    if protocol.expected_items:
        assert f"the published figures are on {protocol.expected_items:,}" in " ".join(
            report["protocol"]["notes"]
        )

    code, out, err = run_cli(capsys, *base)
    assert code == 0, err
    assert out == format_protocol(report) + "\n"
    first = protocol.references[0]
    assert f"{first.value:.1f} [1]" in out and f"[1] {first.model}: {first.source}" in out


def test_a_dataset_lacking_what_the_protocol_needs_is_one_line(layouts, run_dir, capsys):
    cases = [
        ("esc50", layouts["audiocaps"], "esc50 protocol on", "no `fold` column"),
        ("audiocaps", layouts["esc50"], "audiocaps protocol on", "no `texts` column"),
        ("coco", layouts["audiocaps"], "coco protocol on", "the dataset has no image"),
        ("imagenet", layouts["esc50"], "unknown protocol 'imagenet'", ""),
    ]
    for name, data, first, second in cases:
        args = ("eval", "--run", run_dir, "--data", data, "--protocol", name, "--device", "cpu", "--quiet")
        code, out, err = run_cli(capsys, *args)
        assert code == 1 and err.count("\n") == 1 and first in err and second in err, err


def test_plain_eval_reports_map_for_multi_label_rows(layouts, run_dir, capsys):
    args = ("eval", "--run", run_dir, "--data", layouts["audioset"], "--device", "cpu", "--quiet")
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    entry = json.loads(out)["zero_shot"]["audio"]
    assert 0.0 < entry["mAP"] <= 1.0 and entry["n_multilabel_rows"] == 8
    assert entry["n_multilabel_classes"] == 4 and set(entry["ap_per_class"]) == {
        "Speech",
        "Music",
        "Dog",
        "Bark",
    }
    assert "accuracy" in entry  # and the single-label figures on `label` (the first label)
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "zero-shot     audio          mAP " in out and "(4 classes, multi-label)" in out
