"""Pretrained HF audio towers by name (AST, Whisper's encoder, CLAP's audio model) from an offline HF cache:
each brings its preprocessing into InputSpec, trains a few steps through `finetune`, and reloads identically."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from pretrained_support import SAMPLE_RATE, hub_entry, save_ast, save_clap, save_openclip, save_whisper
from safetensors import safe_open

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config
from mmpt.models.checkpoint import load_model
from mmpt.models.hf_audio import HFAudioTower, hf_audio_config
from mmpt.store.synthetic import make_demo_dataset
from mmpt.train.finetune import finetune, resolve_finetune_config

SAVERS = {"ast": save_ast, "whisper": save_whisper, "clap": save_clap}


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf")
    for name, save in SAVERS.items():
        hub_entry(home, f"tiny/{name}", save)
    hub_entry(home, "tiny/clip", save_openclip)
    return home


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("data") / "d.lance", n_rows=48, seed=0)


@pytest.fixture(autouse=True)
def offline_cache(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def latest_checkpoint(run):
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


@pytest.mark.parametrize("name", sorted(SAVERS))
def test_hf_audio_tower_brings_its_preprocessing(name, one_torch_thread):
    base = preset_config("tiny")
    cfg_model = hf_audio_config(base, f"hf:tiny/{name}")
    # the tower's preprocessing reaches InputSpec: the extractor's rate, its natural 1 s clip
    assert cfg_model.audio_tower == f"hf:tiny/{name}"
    model = build_model(cfg_model)
    assert isinstance(model.audio, HFAudioTower)
    assert (model.spec.sample_rate, model.spec.clip_samples) == (SAMPLE_RATE, SAMPLE_RATE)
    wave = torch.randn(3, model.spec.clip_samples) * 0.1
    model.eval()
    with torch.no_grad():
        emb = model.encode_audio(wave)
        alone = model.encode_audio(wave[:1])
    assert emb.shape == (3, 128)
    assert torch.allclose(emb[:1], alone, atol=1e-5)  # no batch dependence in the extractor or pooling


def run_finetune(data, run, **finetune_fields):
    cfg = resolve_finetune_config(
        source="openclip:hf-hub:tiny/clip",
        data=str(data.uri),
        finetune=finetune_fields,
        overrides=["train.warmup_steps=1", "train.eval_after=false", "train.early_stop_metric="],
        max_steps=3,
        batch_size=8,
        lr=1e-3,
        device="cpu",
    )
    cfg.data.num_workers = 0
    return finetune(cfg, run, pairs_given=False, progress=False)


@pytest.mark.parametrize("name", sorted(SAVERS))
def test_bound_to_open_clip_trains_exports_and_reloads(name, data, tmp_path, one_torch_thread):
    """ImageBind-style: the HF audio encoder and its new projection train, the open_clip pair stays fixed."""
    run = tmp_path / name
    result = run_finetune(data, run, audio_tower=f"hf:tiny/{name}")
    assert result.train is not None and result.train.step == 3
    info = json.loads((run / "finetune.json").read_text())
    assert info["fresh"] == sorted(
        [
            "audio.proj.weight",
            *(f"logit_{k}.{p}" for k in ("scale", "bias") for p in ("audio_text", "image_audio")),
        ]
        + ["logit_bias.image_text"]
    )
    assert {n.split(".")[1] for n in info["frozen"]} == {"visual", "text"}  # auto: the pretrained pair
    with safe_open(str(run / "init" / "model.safetensors"), "pt") as a:
        with safe_open(str(latest_checkpoint(run) / "model.safetensors"), "pt") as b:
            encoder = [k for k in a.keys() if k.startswith("audio.encoder.")]
            assert encoder and any(not torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in encoder)
            assert not torch.equal(a.get_tensor("audio.proj.weight"), b.get_tensor("audio.proj.weight"))
            frozen = [k for k in a.keys() if k.startswith("clip.")]
            assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in frozen)
    trained = load_model(latest_checkpoint(run)).eval()
    assert trained.config.audio_tower == f"hf:tiny/{name}"
    again = load_model(latest_checkpoint(run)).eval()  # export = the checkpoint folder; reload it
    wave = torch.randn(4, trained.spec.clip_samples) * 0.1
    with torch.no_grad():
        assert torch.equal(trained.encode_audio(wave), again.encode_audio(wave))


def test_whisper_frozen_encoder_runs_without_autograd():
    from mmpt.train.freeze import apply_freeze

    model = build_model(hf_audio_config(preset_config("tiny"), "hf:tiny/whisper"))
    for p in model.audio.encoder.parameters():
        p.requires_grad_(False)
    model.train()
    assert not model.audio.encoder.training and model.audio.training
    emb = model.audio(torch.randn(2, model.spec.clip_samples))
    assert emb.requires_grad and emb.grad_fn is not None  # the projection still learns
    # the freeze policies see one audio tower: stem, 2 blocks, head (projection and final norm)
    frozen = apply_freeze(model, first_n_blocks={"audio": 1})
    assert any(".layers.0." in n for n in frozen) and not any(".layers.1." in n for n in frozen)


def test_pooling_choices():
    """auto: CLAP's projection (24) / AST's pooler (32); mean: the mean over time of the last hidden state."""
    widths = {}
    for name, pool in (
        ("clap", "auto"),
        ("clap", "mean"),
        ("ast", "auto"),
        ("ast", "cls"),
        ("whisper", "mean"),
    ):
        cfg = hf_audio_config(preset_config("tiny"), f"hf:tiny/{name}")
        tower = HFAudioTower(cfg.audio_tower, 8, sample_rate=cfg.audio.sample_rate, pool=pool).eval()
        widths[name, pool] = tower.proj.in_features
        with torch.no_grad():
            assert tower(torch.randn(2, cfg.audio.clip_samples)).shape == (2, 8)
    assert widths == {("clap", "auto"): 24, ("clap", "mean"): 32, ("ast", "auto"): 32, ("ast", "cls"): 32,
                      ("whisper", "mean"): 32}  # fmt: skip


def test_bad_audio_towers_are_one_line_errors(tmp_path):
    with pytest.raises(
        ConfigError, match="models--tiny--absent .*HF_HUB_OFFLINE is set.*hf download tiny/absent"
    ):
        hf_audio_config(preset_config("tiny"), "hf:tiny/absent")
    cfg = hf_audio_config(preset_config("tiny"), "hf:tiny/ast")
    with pytest.raises(ConfigError, match="expects 16000"):
        HFAudioTower(cfg.audio_tower, 8, sample_rate=48_000)
    with pytest.raises(ConfigError, match="audio.pool must be one of"):
        preset_config("tiny").from_dict({**cfg.to_dict(), "audio": {**cfg.audio.to_dict(), "pool": "max"}})


def test_imagebind_recipe_from_the_cli(hf_home, data, tmp_path):
    """`mmpt finetune --from openclip:hf-hub:... --audio-tower hf:... --recipe imagebind` in a fresh process."""
    run = tmp_path / "ib"
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "mmpt", "finetune",
        "--from", "openclip:hf-hub:tiny/clip",
        "--audio-tower", "hf:tiny/ast",
        "--recipe", "imagebind",
        "--data", str(data.uri), "--run", str(run),
        "--max-steps", "2", "--batch-size", "8", "--num-workers", "0", "--early-stop", "none",
        "--set", "train.warmup_steps=1", "--set", "train.eval_after=false", "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = (run / "config.toml").read_text()
    assert 'audio_tower = "hf:tiny/ast"' in saved and "lr = 0.0001" in saved
    info = json.loads((run / "finetune.json").read_text())
    assert info["kind"] == "open_clip" and "hf:tiny/ast" in info["description"]
    # offline with nothing cached: one line naming the cache folder and how to fill it, exit 1
    missing = [*cmd[:7], "hf:tiny/absent", *cmd[8:]]
    missing[missing.index(str(run))] = str(tmp_path / "never")
    proc = subprocess.run(missing, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "models--tiny--absent" in lines[0] and "hf download tiny/absent" in lines[0]
    assert not (tmp_path / "never").exists()
