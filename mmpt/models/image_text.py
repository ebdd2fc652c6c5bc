"""Image and text towers, built by open_clip from the config's `clip` table (random init, no weights).

A text tower is any module with `forward(tokens: LongTensor[N, L]) -> Tensor[N, embed_dim]` (not yet
normalised), an int attribute `context_length` and `set_grad_checkpointing(enable)`; `build_text_tower`
dispatches on `ModelConfig.text_tower`, so another kind (e.g. "hf:<folder>") is one more branch there.
The towers keep open_clip's module layout so the image-text part maps 1:1 onto an open_clip checkpoint.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mmpt.errors import ConfigError
from mmpt.models.config import ModelConfig

CLIP_BPE_VOCAB = 49408  # open_clip's SimpleTokenizer (the "open_clip" tokenizer) emits ids below this


def build_image_tower(cfg: ModelConfig) -> nn.Module:
    """open_clip's vision tower (ViT, ModifiedResNet or timm trunk) projecting to `cfg.embed_dim`, or
    mmpt's small conv tower when `cfg.image_tower` is "conv"."""
    if cfg.image_tower == "conv":
        from mmpt.models.conv import ConvImageTower

        return ConvImageTower(cfg.embed_dim, dict(cfg.clip["vision_cfg"]))
    from open_clip.model import _build_vision_tower

    vision_cfg = dict(cfg.clip["vision_cfg"])
    if vision_cfg.get("timm_model_name"):
        vision_cfg["timm_model_pretrained"] = False  # never download weights
    return _open_clip_call(_build_vision_tower, cfg, vision_cfg, "vision_cfg")


def build_text_tower(cfg: ModelConfig) -> nn.Module:
    """The text tower named by `cfg.text_tower`: "open_clip" (open_clip's text transformer) or "hf:<folder>"."""
    if cfg.text_tower == "open_clip":
        return _open_clip_text_tower(cfg)
    if cfg.text_tower.startswith("hf:"):
        from mmpt.models.hf_text import build_hf_text_tower

        return build_hf_text_tower(cfg)
    raise ConfigError(f"text tower {cfg.text_tower!r} is not available in this version of mmpt")


def _open_clip_text_tower(cfg: ModelConfig) -> nn.Module:
    from open_clip.model import _build_text_tower

    text_cfg = dict(cfg.clip["text_cfg"])
    if text_cfg.get("hf_model_name") or text_cfg.get("hf_tokenizer_name"):
        raise ConfigError(
            f"model {cfg.name!r} needs a Hugging Face text model or tokenizer, which the 'open_clip' text tower "
            "cannot provide offline; use a config whose text tower uses the CLIP BPE tokenizer"
        )
    if int(text_cfg.get("vocab_size", CLIP_BPE_VOCAB)) < CLIP_BPE_VOCAB:
        raise ConfigError(f"text_cfg.vocab_size must be at least {CLIP_BPE_VOCAB} for the CLIP BPE tokenizer")
    from mmpt.models.text_trim import allow_trimmed_tokens

    # takes token tensors cut to the batch's longest caption where that is exact (mmpt.models.text_trim)
    return allow_trimmed_tokens(_open_clip_call(_build_text_tower, cfg, text_cfg, "text_cfg"))


def accepts_trimmed_tokens(cfg: ModelConfig, text: nn.Module | None) -> bool:
    """True when `text` (built for `cfg`) gives the same output for tokens with trailing padding columns cut
    (`mmpt.models.tokenizer.trim_padding`): InputSpec.trim_text."""
    if text is None or cfg.text_tower != "open_clip":
        return False
    from mmpt.models.text_trim import TrimmableTextTransformer, trimming_is_exact

    return isinstance(text, TrimmableTextTransformer) and trimming_is_exact(text)


def _open_clip_call(builder: Any, cfg: ModelConfig, tower_cfg: dict[str, Any], key: str) -> nn.Module:
    try:
        return builder(cfg.embed_dim, tower_cfg, quick_gelu=bool(cfg.clip.get("quick_gelu", False)))
    except TypeError as e:  # unknown keys in the open_clip dataclass config
        raise ConfigError(f"invalid open_clip {key} for model {cfg.name!r}: {e}") from None


def image_size(cfg: ModelConfig) -> int:
    """Square input size of the image tower (open_clip accepts an int or an [h, w] pair)."""
    size = cfg.clip["vision_cfg"].get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ConfigError(f"only square image towers are supported, got image_size {size}")
        size = size[0]
    return int(size)
