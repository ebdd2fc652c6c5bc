"""Image and text transforms for the towers: open_clip's image transform and the tower's tokenizer."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from mmpt.models.spec import InputSpec

ImageTransform = Callable[[Image.Image], torch.Tensor]


def build_image_transform(spec: InputSpec, augment: bool | dict[str, Any] = False) -> ImageTransform:
    """open_clip's transform at the tower's size: eval resize + centre crop, or its train-time augmentation.

    `augment` True uses open_clip's default train transform; a dict is passed as open_clip's `aug_cfg`
    (e.g. {"scale": (0.5, 1.0), "color_jitter": 0.4}).
    """
    from open_clip.transform import image_transform

    aug_cfg = augment if isinstance(augment, dict) else None
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
