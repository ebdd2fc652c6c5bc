"""Image and text transforms for the towers: open_clip's image transform and the tower's tokenizer."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from mmpt.errors import ConfigError
from mmpt.models.spec import InputSpec

ImageTransform = Callable[[Image.Image], torch.Tensor]
# The aug_cfg keys open_clip's torchvision (non-timm) train transform reads.
_TORCHVISION_AUG_KEYS = {"scale", "color_jitter", "color_jitter_prob", "gray_scale_prob", "use_timm"}


def build_image_transform(spec: InputSpec, augment: bool | dict[str, Any] = False) -> ImageTransform:
    """open_clip's transform at the tower's size: eval resize + centre crop, or its train-time augmentation.

    `augment` True uses open_clip's default train transform; a dict is passed as open_clip's `aug_cfg`
    (e.g. {"scale": (0.5, 1.0), "color_jitter": 0.4}).
    """
    from open_clip.transform import image_transform

    aug_cfg = dict(augment) if isinstance(augment, dict) else None
    if aug_cfg and not aug_cfg.get("use_timm"):
        unused = sorted(set(aug_cfg) - _TORCHVISION_AUG_KEYS)
        if unused:
            raise ConfigError(f"image augmentation options {unused} only work with use_timm=True")
    with warnings.catch_warnings():
        # open_clip warns about every key but `scale` on its torchvision path, though it uses them all.
        warnings.filterwarnings("ignore", message="Unused augmentation cfg items")
        return image_transform(
            spec.image_size,
            is_train=bool(augment),
            mean=tuple(spec.image_mean),
            std=tuple(spec.image_std),
            aug_cfg=aug_cfg,
        )


def decode_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes (PNG, JPEG, ...) fully into an RGB PIL image."""
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")
