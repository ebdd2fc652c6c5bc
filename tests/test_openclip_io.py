"""open_clip interop: real open_clip checkpoints (random init, saved here) in, open_clip-loadable exports out."""

from __future__ import annotations

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config
from mmpt.models.config import tiny_clip_config
from mmpt.models.openclip_io import export_openclip, load_openclip_checkpoint
from mmpt.models.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    tokens = build_tokenizer(build_model(preset_config("tiny")).spec)(
        ["a red circle", "a blue star on grey", "x"]
    )
    return torch.randn(3, 3, 64, 64, generator=g), tokens


def _same_embeddings(mm, oc, inputs) -> None:
    pixels, tokens = inputs
    mm.eval()
    oc.eval()
    with torch.no_grad():
        assert torch.allclose(mm.encode_image(pixels), oc.encode_image(pixels, normalize=True), atol=1e-6)
        assert torch.allclose(mm.encode_text(tokens), oc.encode_text(tokens, normalize=True), atol=1e-6)


@pytest.mark.parametrize("custom_text", [False, True])
def test_open_clip_checkpoints_load_with_identical_embeddings(tmp_path, inputs, custom_text):
    torch.manual_seed(1)
    cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    oc = cls(**tiny_clip_config())
    state = oc.state_dict()
    # open_clip_train's layout: DDP "module." prefix under "state_dict" in a .pt; and a plain .safetensors
    torch.save(
        {"epoch": 2, "name": "x", "state_dict": {f"module.{k}": v for k, v in state.items()}},
        tmp_path / "epoch_2.pt",
    )
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    for name in ("epoch_2.pt", "model.safetensors"):
        mm, loaded = load_openclip_checkpoint(tmp_path / name, "tiny")
        assert mm.modalities == ("image", "text")
        assert len(loaded) == len(state)
        assert mm.logit_scale["image_text"].item() == pytest.approx(oc.logit_scale.item())
        _same_embeddings(mm, oc, inputs)


def test_adding_audio_keeps_the_loaded_towers(tmp_path, inputs):
    oc = open_clip.CLIP(**tiny_clip_config())
    save_file({k: v.contiguous() for k, v in oc.state_dict().items()}, str(tmp_path / "oc.safetensors"))
    mm, loaded = load_openclip_checkpoint(
        tmp_path / "oc.safetensors", preset_config("tiny"), modalities=["image", "text", "audio"]
    )
    assert mm.modalities == ("image", "text", "audio")
    assert not any(k.startswith("audio.") for k in loaded)
    _same_embeddings(mm, oc, inputs)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_export_loads_in_open_clip_with_identical_embeddings(tmp_path, inputs, suffix):
    torch.manual_seed(2)
    mm = build_model(preset_config("tiny"))
    name = f"mmpt-test-export{suffix.replace('.', '-')}"
    weights, config = export_openclip(mm, tmp_path / f"exported{suffix}", config_name=name)
    assert weights.is_file() and config.name == f"{name}.json"
    open_clip.add_model_config(config)
    oc = open_clip.create_model(name, pretrained=str(weights))
    assert type(oc).__name__ == "CLIP"
    _same_embeddings(mm, oc, inputs)
    back, _ = load_openclip_checkpoint(weights, str(config))  # and back into mmpt
    _same_embeddings(back, oc, inputs)


def test_config_json_beside_the_checkpoint_is_found(tmp_path, inputs):
    mm = build_model(preset_config("tiny"))
    weights, config = export_openclip(mm, tmp_path / "found.safetensors")
    assert config == tmp_path / "found.json"
    back, _ = load_openclip_checkpoint(weights)  # no config given: found.json is used
    open_clip.add_model_config(config)
    _same_embeddings(back, open_clip.create_model("found", pretrained=str(weights)), inputs)


def test_shape_mismatch_names_the_tensors(tmp_path):
    cfg = tiny_clip_config()
    cfg["vision_cfg"]["width"] = 96
    cfg["vision_cfg"]["head_width"] = 32
    save_file(
        {k: v.contiguous() for k, v in open_clip.CLIP(**cfg).state_dict().items()},
        str(tmp_path / "wide.safetensors"),
    )
    with pytest.raises(
        ConfigError, match=r"shapes differ for clip\.visual\.class_embedding \(96,\) vs model \(128,\)"
    ):
        load_openclip_checkpoint(tmp_path / "wide.safetensors", "tiny")


def test_missing_config_and_non_image_text_export_are_refused(tmp_path):
    save_file({"w": torch.zeros(1)}, str(tmp_path / "lonely.safetensors"))
    with pytest.raises(ConfigError, match="no model config for"):
        load_openclip_checkpoint(tmp_path / "lonely.safetensors")
    cfg = preset_config("tiny")
    cfg.modalities = ["audio", "text"]
    with pytest.raises(ConfigError, match="only a model with image and text towers exports"):
        export_openclip(build_model(cfg), tmp_path / "x.safetensors")
    with pytest.raises(ConfigError, match="use a .safetensors"):
        export_openclip(build_model(preset_config("tiny")), tmp_path / "x.zip")
