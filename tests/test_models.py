"""Model towers, presets, config round trips and checkpoints (tiny models, random init, CPU)."""

from __future__ import annotations

import json
import math
import tomllib

import pytest
import tomli_w
import torch

from mmpt.errors import ConfigError
from mmpt.models import (
    AudioConfig,
    ModelConfig,
    build_model,
    load_model,
    load_state,
    preset_config,
    resolve_model_config,
    save_model,
)

N = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(preset_config("tiny")).eval()


def _inputs(spec, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(n, 3, spec.image_size, spec.image_size, generator=g),
        "text": torch.randint(0, 49408, (n, spec.context_length), generator=g),
        "audio": 0.1 * torch.randn(n, spec.clip_samples, generator=g),
    }


def test_tiny_spec_and_params(tiny):
    spec = tiny.spec
    assert (spec.image_size, spec.context_length, spec.sample_rate, spec.clip_samples) == (
        64,
        32,
        16000,
        16000,
    )
    assert spec.tokenizer == "open_clip"
    assert tiny.modalities == ("image", "text", "audio")
    assert set(tiny.logit_scale) == set(tiny.logit_bias) == {"image_text", "audio_text", "image_audio"}
    assert tiny.logit_scale["image_text"].item() == pytest.approx(math.log(1 / 0.07))
    counts = tiny.param_count()
    assert 1_000_000 < counts["total"] < 8_000_000
    assert counts["image"] + counts["text"] + counts["audio"] + counts["heads"] == counts["total"]
    assert counts["heads"] == 6


@pytest.mark.parametrize("modality", ["image", "text", "audio"])
def test_encoders_return_unit_vectors(tiny, modality):
    x = _inputs(tiny.spec)[modality]
    with torch.no_grad():
        emb = getattr(tiny, f"encode_{modality}")(x)
    assert emb.shape == (N, tiny.config.embed_dim) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(N))


def test_forward_encodes_only_masked_in_rows(tiny):
    x = _inputs(tiny.spec, n=4)
    batch = {
        **x,
        "image_mask": torch.tensor([True, False, True, False]),
        "text_mask": torch.ones(4, dtype=torch.bool),
        "audio_mask": torch.zeros(4, dtype=torch.bool),
    }
    calls = []
    hook = tiny.audio.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            out = tiny(batch)
            expected_image = tiny.encode_image(x["image"][[0, 2]])
    finally:
        hook.remove()
    assert calls == []  # no row has audio: the audio tower is not run
    assert set(out) == {"image", "text", "audio"}
    torch.testing.assert_close(out["image"][[0, 2]], expected_image, atol=1e-5, rtol=1e-5)
    assert out["image"][[1, 3]].abs().sum() == 0 and out["audio"].abs().sum() == 0
    torch.testing.assert_close(out["text"].norm(dim=-1), torch.ones(4))


def test_modality_subset_builds_only_those_towers():
    cfg = preset_config("tiny")
    cfg.modalities = ["text", "image"]
    model = build_model(ModelConfig.from_dict(cfg.to_dict()))
    assert model.modalities == ("image", "text") and model.audio is None
    assert list(model.logit_scale) == ["image_text"]
    assert model.param_count()["audio"] == 0


def test_grad_checkpointing_still_trains(tiny):
    model = build_model(preset_config("tiny"))
    model.set_grad_checkpointing(True)
    x = _inputs(model.spec, n=2)
    loss = sum(model.encode(m, x[m]).sum() for m in ("image", "text", "audio"))
    loss.backward()
    for name in ("image", "text", "audio"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.tower_parameters(name))


def test_spec_augment_only_in_training():
    cfg = AudioConfig(spec_augment=True, freq_mask=16, time_mask=40)
    model = build_model(ModelConfig(audio=cfg, modalities=["audio", "text"]))
    wave = 0.1 * torch.randn(2, cfg.clip_samples)
    fe = model.audio.frontend
    fe.eval()
    assert torch.equal(fe(wave), fe(wave))
    assert fe(wave).shape == (2, 1, cfg.n_mels, cfg.n_frames)
    clean = fe(wave)
    fe.train()
    masked = fe(wave)
    assert not torch.equal(masked, clean)
    assert (masked == 0).sum() > (clean == 0).sum()  # masking sets bands/frames to 0


def test_presets_small_and_base_on_meta_device():
    with torch.device("meta"):
        small = build_model(preset_config("small"))
        base = build_model(preset_config("base"))
    assert small.spec.image_size == base.spec.image_size == 224
    assert base.spec.clip_samples == 160_000 and small.spec.clip_samples == 80_000
    assert base.config.embed_dim == 512 and base.config.clip["vision_cfg"]["width"] == 768
    assert 80e6 < base.param_count()["image"] < 90e6  # ViT-B/16
    assert 80e6 < base.param_count()["audio"] < 90e6  # ViT-B over 128-mel patches
    assert small.param_count()["total"] < base.param_count()["total"]


def test_resolve_names_and_paths(tmp_path):
    assert resolve_model_config("tiny").to_dict() == preset_config("tiny").to_dict()
    assert resolve_model_config("small").name == "small"
    vit = resolve_model_config("ViT-B-32")
    assert vit.name == "ViT-B-32" and vit.embed_dim == 512 and vit.clip["vision_cfg"]["patch_size"] == 32
    custom = {**preset_config("tiny").clip, "embed_dim": 64, "audio_cfg": {"width": 64, "heads": 2}}
    path = tmp_path / "my-model.json"
    path.write_text(json.dumps(custom))
    cfg = resolve_model_config(str(path))
    assert cfg.name == str(path) and cfg.embed_dim == 64 and cfg.audio.width == 64
    model = build_model(cfg)
    assert model.encode_audio(0.1 * torch.randn(1, cfg.audio.clip_samples)).shape == (1, 64)


@pytest.mark.parametrize("name", ["nonexistent-model", "/no/such/config.json"])
def test_unknown_model_is_a_one_line_config_error(name):
    with pytest.raises(ConfigError) as err:
        resolve_model_config(name)
    assert "\n" not in str(err.value)
    if not name.endswith(".json"):
        assert "tiny, tiny-conv, small, base" in str(err.value) and "open_clip" in str(err.value)


def test_bad_configs_are_config_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 64}))
    with pytest.raises(ConfigError, match="not an open_clip model config"):
        resolve_model_config(str(bad))
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"embed_dims": 3})
    with pytest.raises(ConfigError, match="unknown audio config keys"):
        ModelConfig.from_dict({"audio": {"mels": 3}})
    with pytest.raises(ConfigError, match="unknown modalities"):
        ModelConfig(modalities=["image", "video"])
    cfg = preset_config("tiny")
    cfg.clip["vision_cfg"]["wrong_key"] = 1
    with pytest.raises(ConfigError, match="vision_cfg"):
        build_model(cfg)
    with pytest.raises(ConfigError, match="Hugging Face"):
        build_model(resolve_model_config("ViT-B-16-SigLIP"))  # fails before any tower is built


def test_config_round_trips_through_toml_without_nulls():
    import open_clip

    cfg = preset_config("base")
    text = tomli_w.dumps(cfg.to_dict())
    assert ModelConfig.from_dict(tomllib.loads(text)).to_dict() == cfg.to_dict()
    assert ModelConfig.from_dict({}).to_dict() == ModelConfig().to_dict()  # missing keys -> defaults
    for name in open_clip.list_models():  # every open_clip config becomes valid TOML (nulls removed)
        tomli_w.dumps(resolve_model_config(name).to_dict())
    eva = resolve_model_config("EVA02-B-16")
    assert eva.clip["vision_cfg"]["timm_proj"] == ""  # null -> the equivalent "" (not the "linear" default)


def test_save_load_round_trip(tiny, tmp_path):
    save_model(tiny, tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["checksums.json", "model.json", "model.safetensors"]
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.config.to_dict() == tiny.config.to_dict()
    x = _inputs(tiny.spec)
    with torch.no_grad():
        for m in ("image", "text", "audio"):
            assert torch.equal(tiny.encode(m, x[m]), loaded.encode(m, x[m]))
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_load_state_names_mismatched_tensors(tiny, tmp_path):
    save_model(tiny, tmp_path / "ckpt")
    other = build_model(ModelConfig(embed_dim=64))
    with pytest.raises(ConfigError) as err:
        load_state(other, tmp_path / "ckpt" / "model.safetensors")
    assert "do not fit" in str(err.value) and "proj" in str(err.value) and "\n" not in str(err.value)
    fewer = build_model(ModelConfig(modalities=["image", "text"]))
    with pytest.raises(ConfigError, match="unexpected audio"):
        load_state(fewer, tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(ConfigError, match="no model config"):
        load_model(tmp_path / "empty")


def test_image_text_towers_map_one_to_one_onto_open_clip(tiny):
    """`clip.*` weights + the image-text logit scale load strictly into open_clip's CustomTextCLIP."""
    from open_clip.model import CustomTextCLIP

    oc = CustomTextCLIP(**tiny.config.clip).eval()
    state = {k.removeprefix("clip."): v for k, v in tiny.state_dict().items() if k.startswith("clip.")}
    oc.load_state_dict({**state, "logit_scale": tiny.logit_scale["image_text"].detach()}, strict=True)
    x = _inputs(tiny.spec)
    with torch.no_grad():
        assert torch.equal(oc.encode_image(x["image"], normalize=True), tiny.encode_image(x["image"]))
        assert torch.equal(oc.encode_text(x["text"], normalize=True), tiny.encode_text(x["text"]))
