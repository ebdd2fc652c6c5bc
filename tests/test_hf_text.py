"""The Hugging Face text tower on the packaged all-MiniLM-L6-v2 (offline), and LiT-style binding from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import open_clip
import pytest
import torch
from safetensors import safe_open

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config
from mmpt.models.hf_text import HFTextTower, hf_text_config, minilm_path, resolve_hf_folder
from mmpt.models.openclip_io import export_openclip
from mmpt.models.tokenizer import build_tokenizer

TEXTS = ["a red circle", "there is a small blue star in the top left corner", "purple"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_minilm_is_found_in_the_installed_package():
    folder = minilm_path()
    assert (folder / "model.safetensors").is_file()
    assert resolve_hf_folder("hf:minilm") == folder == resolve_hf_folder(str(folder))


def test_mean_pooled_tower_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    tower = HFTextTower(minilm_path(), embed_dim=384, context_length=64).eval()
    with torch.no_grad():
        tower.proj.weight.copy_(torch.eye(384))
    spec = build_model(hf_text_config(preset_config("tiny"), "minilm", context_length=64)).spec
    tokens = build_tokenizer(spec)(TEXTS)
    with torch.no_grad():
        ours = torch.nn.functional.normalize(tower(tokens), dim=-1)
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(
        TEXTS, convert_to_tensor=True, normalize_embeddings=True
    )
    assert torch.allclose(ours, reference.cpu(), atol=1e-5)


def test_padding_does_not_change_the_embedding():
    model = build_model(hf_text_config(preset_config("tiny"), "minilm", context_length=16)).eval()
    longer = build_model(hf_text_config(preset_config("tiny"), "minilm", context_length=48)).eval()
    longer.load_state_dict(model.state_dict())
    assert model.spec.tokenizer.startswith("hf:") and model.spec.context_length == 16
    with torch.no_grad():
        a = model.encode_text(build_tokenizer(model.spec)(TEXTS[:1]))
        b = longer.encode_text(build_tokenizer(longer.spec)(TEXTS[:1]))
    assert torch.allclose(a, b, atol=1e-5)


def test_bad_folders_and_lengths_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a local Hugging Face model folder"):
        resolve_hf_folder(f"hf:{tmp_path}")
    with pytest.raises(ConfigError, match="context_length must be between 2 and 512"):
        HFTextTower(minilm_path(), embed_dim=8, context_length=1000)


def test_hf_text_model_exports_to_open_clip(tmp_path):
    torch.manual_seed(0)
    model = build_model(hf_text_config(preset_config("tiny"), "minilm")).eval()
    weights, config = export_openclip(model, tmp_path / "lit.safetensors", config_name="mmpt-test-lit")
    assert json.loads(config.read_text())["custom_text"] is True
    open_clip.add_model_config(config)
    oc = open_clip.create_model("mmpt-test-lit", pretrained=str(weights)).eval()
    tokens = build_tokenizer(model.spec)(TEXTS)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.encode_text(tokens), oc.encode_text(tokens, normalize=True), atol=1e-5)
        assert torch.allclose(model.encode_image(pixels), oc.encode_image(pixels, normalize=True), atol=1e-6)


def test_lit_on_minilm_learns_from_the_cli(demo_dataset, tmp_path):
    """New image and audio towers bound to the frozen MiniLM text tower (LiT / LanguageBind style)."""
    run = tmp_path / "lit"
    # the report split is the train split: 240 rows make the above-chance check far less noisy than 30
    cmd = [
        sys.executable,
        "-m",
        "mmpt",
        "finetune",
        "--from",
        "hf:minilm",
        "--data",
        str(demo_dataset.uri),
        "--run",
        str(run),
        "--max-steps",
        "12",
        "--batch-size",
        "32",
        "--lr",
        "2e-3",
        "--num-workers",
        "0",
        "--early-stop",
        "none",
        "--set",
        "train.warmup_steps=3",
        "--set",
        "data.test_split=train",
        "--quiet",
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    before, after = out["before"]["zero_shot"]["image"], out["eval"]["zero_shot"]["image"]
    n_classes = len(after["classes"])
    # clearly above chance (top-5 chance is 5 / classes, about 0.28) and above the untrained towers
    assert after["top5_accuracy"] > 1.5 * 5 / n_classes
    assert after["accuracy"] > 1.5 / n_classes
    assert after["top5_accuracy"] > before["top5_accuracy"] + 0.1
    # the MiniLM encoder stayed bit-identical; its new projection and the image/audio towers trained
    ckpt = (run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()) / "model.safetensors"
    with safe_open(str(run / "init" / "model.safetensors"), "pt") as a, safe_open(str(ckpt), "pt") as b:
        encoder = [k for k in a.keys() if k.startswith("clip.text.transformer.")]
        assert len(encoder) > 90
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in encoder)
        for k in ("clip.text.proj.weight", "clip.visual.proj", "audio.vit.head.weight"):
            assert not torch.equal(a.get_tensor(k), b.get_tensor(k)), k
    info = json.loads((run / "finetune.json").read_text())
    assert info["kind"] == "hf" and "clip.text.proj.weight" in info["fresh"]
    assert set(info["frozen"]) == set(encoder)
