"""Named model presets and resolution of a model name: preset, open_clip model name, or config JSON path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmpt.errors import ConfigError
from mmpt.models.config import AudioConfig, ModelConfig, tiny_clip_config
from mmpt.models.conv import conv_vision_config

PRESETS: tuple[str, ...] = ("tiny", "tiny-conv", "small", "base")


# 128 mel bands need a finer FFT grid than 201 bins (else the lowest filters are empty): the 25 ms
# window is zero-padded to n_fft=1024.
def _small_audio() -> AudioConfig:
    return AudioConfig(
        clip_seconds=5.0, n_mels=128, n_fft=1024, time_mask=50, freq_mask=24, width=384, depth=12, heads=6
    )


def _base_audio() -> AudioConfig:
    return AudioConfig(
        clip_seconds=10.0,
        n_mels=128,
        n_fft=1024,
        time_mask=100,
        freq_mask=24,
        width=768,
        depth=12,
        heads=12,
        drop_path=0.1,
    )


def preset_config(name: str) -> ModelConfig:
    """The ModelConfig of a preset: tiny (CPU tests), tiny-conv (tiny with a conv image tower: the demo's),
    small (ViT-S/16-class), base (ViT-B/16)."""
    if name == "tiny":
        return ModelConfig(name="tiny", embed_dim=128, clip=tiny_clip_config(), audio=AudioConfig())
    if name == "tiny-conv":
        # tiny, with a small conv image tower instead of the patch ViT: it learns *shape* from a few thousand
        # images in a few hundred steps, at a fifth of the ViT's cost per step (see mmpt/models/conv.py); one
        # audio block, not two: the demo's audio reached 0.996-1.0 zero-shot with either, and the second block
        # cost ~15% of a CPU step
        clip = tiny_clip_config()
        clip["vision_cfg"] = conv_vision_config(image_size=64, widths=(16, 32, 64), depth=1)
        return ModelConfig(
            name="tiny-conv", embed_dim=128, clip=clip, image_tower="conv", audio=AudioConfig(depth=1)
        )
    if name == "small":
        clip = {
            "embed_dim": 384,
            "vision_cfg": {"image_size": 224, "patch_size": 16, "width": 384, "layers": 12, "head_width": 64},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 384, "heads": 6, "layers": 12},
        }
        return ModelConfig(name="small", embed_dim=384, clip=clip, audio=_small_audio())
    if name == "base":
        clip = _open_clip_builtin("ViT-B-16")
        return ModelConfig(name="base", embed_dim=int(clip["embed_dim"]), clip=clip, audio=_base_audio())
    raise ConfigError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")


def resolve_model_config(name_or_path: str) -> ModelConfig:
    """A ModelConfig from a preset name, an open_clip model name (`open_clip.list_models()`), or the
    path of an open_clip model-config JSON (embed_dim, vision_cfg, text_cfg; optional audio_cfg)."""
    if name_or_path in PRESETS:
        return preset_config(name_or_path)
    if name_or_path.endswith(".json") or Path(name_or_path).is_file():
        return _config_from_json(Path(name_or_path))
    import open_clip

    if name_or_path in open_clip.list_models():
        clip = _open_clip_builtin(name_or_path)
        return _config_from_clip(name_or_path, clip, audio={})
    raise ConfigError(
        f"unknown model {name_or_path!r}: expected a preset ({', '.join(PRESETS)}), an open_clip model name "
        "(see open_clip.list_models()) or the path of an open_clip model-config JSON"
    )


def _open_clip_builtin(name: str) -> dict[str, Any]:
    from open_clip.factory import get_model_config

    cfg = get_model_config(name)
    if cfg is None:
        raise ConfigError(f"open_clip has no model config named {name!r}")
    return cfg


def _config_from_json(path: Path) -> ModelConfig:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"model config file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read model config {path}: {e}") from None
    data = data.get("model_cfg", data) if isinstance(data, dict) else data  # open_clip_config.json layout
    if not isinstance(data, dict) or not all(k in data for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ConfigError(f"{path} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
    audio = data.pop("audio_cfg", {})
    return _config_from_clip(str(path), data, audio)


def _config_from_clip(name: str, clip: dict[str, Any], audio: dict[str, Any]) -> ModelConfig:
    """Keep the tower keys of an open_clip config; pick an audio tower sized like the shared space
    unless the JSON gives one (`audio_cfg`)."""
    clip = {k: clip[k] for k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu") if k in clip}
    embed_dim = int(clip["embed_dim"])
    if audio:
        audio_cfg = AudioConfig.from_dict(audio)
    elif embed_dim <= 128:
        audio_cfg = AudioConfig()
    elif embed_dim <= 384:
        audio_cfg = _small_audio()
    else:
        audio_cfg = _base_audio()
    return ModelConfig(name=name, embed_dim=embed_dim, clip=clip, audio=audio_cfg)
