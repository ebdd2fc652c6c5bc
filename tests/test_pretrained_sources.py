"""Pretrained sources by name from the local caches: open_clip's pretrained registry and HF hub ids (text towers),
the binding recipes, and the one-line errors when the cache lacks a name offline."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from open_clip.pretrained import _pcfg
from pretrained_support import hub_entry, save_bert, save_openclip, save_whisper, tiny_openclip_config

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config
from mmpt.models.checkpoint import load_model
from mmpt.models.hf_text import hf_text_config, resolve_hf_folder
from mmpt.models.openclip_io import export_openclip
from mmpt.models.sources import hf_cache_dir, resolve_hf_model, resolve_openclip
from mmpt.models.tokenizer import build_tokenizer
from mmpt.store.synthetic import make_demo_dataset
from mmpt.train.finetune import finetune, resolve_finetune_config
from mmpt.train.recipes import RECIPES, get_recipe

MODEL = "mmpt-test-tiny-clip"  # registered with open_clip by the `registry` fixture
TEXTS = ["a red circle", "the blue star sound"]


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf")
    hub_entry(home, "tiny/bert", save_bert)
    hub_entry(home, "tiny/whisper", save_whisper)
    hub_entry(home, "mmpt-test/tiny-clip", save_openclip)  # the weights of the registry tag "cached"
    return home


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("data") / "d.lance", n_rows=48, seed=0)


@pytest.fixture(autouse=True)
def offline_cache(hf_home, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPEN_CLIP_CACHE", str(tmp_path / "clip-cache"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A tiny model in open_clip's registries: its config by name, tags hosted on the hub and at a URL."""
    config = tmp_path / f"{MODEL}.json"
    config.write_text(json.dumps(tiny_openclip_config()))
    open_clip.add_model_config(config)
    tags = {
        "cached": _pcfg(hf_hub="mmpt-test/tiny-clip/"),
        "absent": _pcfg(hf_hub="mmpt-test/never-downloaded/"),
        "web": _pcfg(url="https://example.invalid/weights/tiny-clip.pt", quick_gelu=True),
    }
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, MODEL, tags)
    return tags


def test_hub_ids_resolve_through_the_hf_cache(hf_home, monkeypatch):
    folder = resolve_hf_model("hf:tiny/bert")
    assert folder.parent.parent == hf_home / "hub" / "models--tiny--bert"
    assert resolve_hf_folder("hf:tiny/bert") == folder
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))  # HF_HUB_CACHE wins over HF_HOME
    assert hf_cache_dir() == hf_home / "hub" and resolve_hf_model("tiny/bert") == folder


def test_offline_with_an_empty_cache_is_one_line(tmp_path, monkeypatch, registry):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    for bad, where, fill in (
        ("hf:org/text-model", "models--org--text-model", "hf download org/text-model"),
        (
            f"openclip:{MODEL}/absent",
            "models--mmpt-test--never-downloaded",
            "hf download mmpt-test/never-downloaded",
        ),
        (
            "openclip:ViT-B-32/laion2b_s34b_b79k",
            "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K",
            "hf download",
        ),
        (f"openclip:{MODEL}/web", str(tmp_path / "clip-cache" / "tiny-clip.pt"), "download https://example"),
    ):
        with pytest.raises(ConfigError) as err:
            resolve_openclip(bad) if bad.startswith("openclip:") else hf_text_config(
                preset_config("tiny"), bad
            )
        message = str(err.value)
        assert "\n" not in message and where in message and fill in message, message
        assert "HF_HUB_OFFLINE is set" in message
    with pytest.raises(
        ConfigError, match="no pretrained weights ViT-B-32/nope; its tags: .*laion2b_s34b_b79k"
    ):
        resolve_openclip("openclip:ViT-B-32/nope")
    with pytest.raises(ConfigError, match="expected openclip:<model>/<pretrained tag>"):
        resolve_openclip("openclip:ViT-B-32")


def test_registry_tags_resolve_from_both_caches(registry, tmp_path):
    found = resolve_openclip(f"openclip:{MODEL}/cached")
    assert found.weights.name == "open_clip_model.safetensors" and "models--mmpt-test--tiny-clip" in str(
        found.weights
    )
    assert found.config is not None and found.config.clip["vision_cfg"]["image_size"] == 64
    cached = tmp_path / "clip-cache" / "tiny-clip.pt"  # a URL tag: the file of that name in OPEN_CLIP_CACHE
    cached.parent.mkdir()
    cached.write_bytes(b"weights")
    web = resolve_openclip(f"openclip:{MODEL}/web")
    assert web.weights == cached and web.config is not None and web.config.clip["quick_gelu"] is True


def test_hf_text_tower_by_hub_id(hf_home):
    cfg = hf_text_config(preset_config("tiny"), "hf:tiny/bert", context_length=16)
    assert cfg.text_tower == "hf:tiny/bert"  # the portable name is what a run saves
    assert cfg.clip["text_cfg"]["hf_pooler_type"] == "cls_pooler"  # read from 1_Pooling/config.json
    model = build_model(cfg).eval()
    assert model.spec.tokenizer == f"hf:{resolve_hf_model('tiny/bert')}" and model.spec.context_length == 16
    tokens = build_tokenizer(model.spec)(TEXTS)
    assert tokens.shape == (2, 16) and int(tokens[0, 0]) == 2  # [CLS] of the tiny vocab
    with torch.no_grad():
        assert model.encode_text(tokens).shape == (2, 128)


def test_languagebind_from_registry_with_hf_text_and_audio(registry, data, tmp_path, one_torch_thread):
    """openclip:<model>/<tag> + a hub-id text tower + a Whisper audio tower, the languagebind recipe."""
    run = tmp_path / "lb"
    cfg = resolve_finetune_config(
        source=f"openclip:{MODEL}/cached",
        data=str(data.uri),
        recipe="languagebind",
        finetune={"text_tower": "hf:tiny/bert", "audio_tower": "hf:tiny/whisper", "context_length": 16},
        overrides=["train.warmup_steps=1", "train.eval_after=false", "train.early_stop_metric="],
        max_steps=3,
        batch_size=8,
        lr=1e-3,
        device="cpu",
    )
    cfg.data.num_workers = 0
    result = finetune(cfg, run, pairs_given=False, progress=False)
    assert result.train is not None and result.train.step == 3
    assert cfg.train.pairs == ["image-text", "audio-text"]  # only pairs with the frozen text anchor
    info = json.loads((run / "finetune.json").read_text())
    assert {n.split(".")[1] for n in info["frozen"]} == {"text"} and "clip.text.proj.weight" not in info[
        "frozen"
    ]
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    trained, init = load_model(latest).eval(), load_model(run / "init").eval()
    assert trained.config.text_tower == "hf:tiny/bert" and trained.config.audio_tower == "hf:tiny/whisper"
    tokens = build_tokenizer(trained.spec)(TEXTS)
    wave = torch.randn(2, trained.spec.clip_samples) * 0.1
    with torch.no_grad():
        assert not torch.equal(trained.encode_text(tokens), init.encode_text(tokens))  # its projection learnt
        again = load_model(latest).eval()
        assert torch.equal(trained.encode_text(tokens), again.encode_text(tokens))
        assert torch.equal(trained.encode_audio(wave), again.encode_audio(wave))
    encoder = [k for k in init.state_dict() if k.startswith("clip.text.transformer.")]
    assert all(torch.equal(init.state_dict()[k], trained.state_dict()[k]) for k in encoder)


def test_trimodal_recipe_exports_back_to_open_clip(registry, data, tmp_path, one_torch_thread):
    """Every tower trains (image/text at a tenth of the rate); the image-text part exports to open_clip."""
    run = tmp_path / "tri"
    cfg = resolve_finetune_config(
        source=f"openclip:{MODEL}/cached",
        data=str(data.uri),
        recipe="trimodal",
        finetune={"add": ["audio"]},
        overrides=["train.warmup_steps=1", "train.eval_after=false", "train.early_stop_metric="],
        max_steps=2,
        batch_size=8,
        device="cpu",
    )
    cfg.data.num_workers = 0
    assert cfg.require_finetune().tower_lr == {"image": 0.1, "text": 0.1} and cfg.train.lr == 5e-5
    finetune(cfg, run, pairs_given=False, progress=False)
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    model = load_model(latest).eval()
    assert json.loads((run / "finetune.json").read_text())["frozen"] == []
    weights, config = export_openclip(
        model, tmp_path / "out" / "tri.safetensors", config_name="mmpt-test-tri"
    )
    open_clip.add_model_config(config)
    oc = open_clip.create_model("mmpt-test-tri", pretrained=str(weights)).eval()
    tokens = build_tokenizer(model.spec)(TEXTS)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.encode_text(tokens), oc.encode_text(tokens, normalize=True), atol=1e-6)
        assert torch.allclose(model.encode_image(pixels), oc.encode_image(pixels, normalize=True), atol=1e-6)


def test_recipes_are_plain_fine_tune_settings():
    assert set(RECIPES) == {"imagebind", "languagebind", "trimodal"}
    assert get_recipe("imagebind").sections["finetune"]["freeze"] == ["image", "text"]
    with pytest.raises(ConfigError, match="unknown recipe 'clap': expected one of imagebind, languagebind"):
        get_recipe("clap")
    with pytest.raises(ConfigError, match="finetune.pairs_with must be one of"):
        resolve_finetune_config(source="x", data="d", finetune={"pairs_with": "video"})
