"""Image and text transforms for the towers: open_clip's image transform and the tower's tokenizer."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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
    (e.g. {"scale": (0.5, 1.0), "color_jitter": (0.4, 0.4, 0.4, 0.1), "color_jitter_prob": 0.8}).
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


@dataclass(frozen=True)
class BatchNormalize:
    """ToTensor + Normalize over a whole batch of equally sized RGB images, in one pass.

    Each element gets the very operations torchvision applies per image (uint8 -> float32, / 255, - mean,
    / std), so the result is bit-identical to stacking the per-image transform's outputs; a few large tensor
    ops replace three small ones and a copy per image (about 15% of a train batch's decoding CPU here).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: Sequence[np.ndarray | None], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [size, size, 3] arrays (see `as_pixels`) -> [B, 3, size, size] float32 (zeros where an
        image is None) and the Bool[B] presence mask."""
        mask = torch.tensor([image is not None for image in images], dtype=torch.bool)
        pixels = np.zeros((len(images), size, size, 3), dtype=np.uint8)
        for i, image in enumerate(images):
            if image is not None:
                pixels[i] = image
        out = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
        out.sub_(torch.tensor(self.mean).view(1, -1, 1, 1)).div_(torch.tensor(self.std).view(1, -1, 1, 1))
        out[~mask] = 0.0
        return out, mask

    @staticmethod
    def as_pixels(image: Image.Image, size: int) -> np.ndarray:
        """An image from the per-image steps as uint8 [size, size, 3]; ValueError if it has another shape."""
        pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        if pixels.shape != (size, size, 3):
            raise ValueError(f"image transform gave shape {pixels.shape}, expected ({size}, {size}, 3)")
        return pixels


def split_batch_normalize(
    transform: ImageTransform,
) -> tuple[Callable[[Image.Image], Image.Image], BatchNormalize] | None:
    """open_clip's Compose(..., ToTensor, Normalize) as (its per-image PIL steps, the batch normalisation).

    None when the pipeline does not end that way (e.g. timm's, whose random erasing follows Normalize).
    """
    from torchvision.transforms import Compose, Normalize, ToTensor

    steps = getattr(transform, "transforms", None)
    if not isinstance(transform, Compose) or not steps or len(steps) < 2:
        return None
    to_tensor, normalize = steps[-2], steps[-1]
    if not isinstance(to_tensor, ToTensor) or not isinstance(normalize, Normalize):
        return None
    return Compose(steps[:-2]), BatchNormalize(
        tuple(map(float, normalize.mean)), tuple(map(float, normalize.std))
    )
