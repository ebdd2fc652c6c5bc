"""Image and text transforms for the towers: open_clip's image transform and the tower's tokenizer."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
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


def decode_image(data: bytes, min_side: int | None = None) -> Image.Image:
    """Decode encoded image bytes (PNG, JPEG, ...) into an RGB PIL image.

    With `min_side`, a JPEG is decoded at the smallest of 1/1, 1/2, 1/4, 1/8 of its size whose shorter side is
    still >= `min_side` (libjpeg's DCT scaling, PIL `draft`): for a photo twice the model's size that is 3-4x
    less decoding; the transform that follows resizes it the same way (see `DRAFT_TOLERANCE`).
    """
    with Image.open(io.BytesIO(data)) as img:
        if min_side is not None and img.format == "JPEG":
            short = min(img.size)
            if short >= 2 * min_side:
                scale = short / min_side  # request a size whose shorter side is exactly min_side
                img.draft("RGB", (int(img.width / scale), int(img.height / scale)))
        return img.convert("RGB")


# How far the fast eval path (JPEG draft + resize of the centre crop's box only) may move a pixel from open_clip's
# transform of the fully decoded image, in uint8 levels: the mean over an image and the worst 0.1% of pixels.
# Measured (tests/test_pipeline_decode.py): mean 0.3-1.2, worst 0.1% 2-20 (at sharp edges; 2-3 on smooth
# photos); the crop-box resize alone moves a pixel by at most 1. Images too small to draft are not drafted.
DRAFT_TOLERANCE = {"mean_abs": 1.5, "p999_abs": 24}


def fast_eval_steps(
    steps: Callable[[Image.Image], Image.Image], size: int
) -> Callable[[Image.Image], Image.Image] | None:
    """open_clip's eval PIL steps (Resize(shorter side) -> CenterCrop -> MaybeConvertMode) as one resize of
    the centre crop's box: the pixels cropped away are never resampled (~30% less work for a 4:3 image).

    Output differs from the two steps by at most one uint8 level (rounding of PIL's filter coefficients).
    None when `steps` is any other pipeline (augmentation, other resize modes): it is then used unchanged.
    """
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    parts = getattr(steps, "transforms", None)
    if not parts or len(parts) < 2 or type(parts[0]) is not Resize or type(parts[1]) is not CenterCrop:
        return None
    resize, crop = parts[0], parts[1]
    target = (
        resize.size[0] if isinstance(resize.size, list | tuple) and len(resize.size) == 1 else resize.size
    )
    if (
        target != size
        or tuple(crop.size) != (size, size)
        or resize.max_size is not None
        or resize.interpolation != InterpolationMode.BICUBIC
        or resize.antialias is False
        or any(type(p).__name__ != "MaybeConvertMode" for p in parts[2:])
    ):
        return None
    return partial(_resize_centre_crop, size=size)


def _resize_centre_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize(size) + CenterCrop(size) as torchvision computes them, resampling only the kept box."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)  # torchvision's _compute_resized_output_size
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    out = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return out if out.mode == "RGB" else out.convert("RGB")


@dataclass(frozen=True)
class BatchNormalize:
    """ToTensor + Normalize over a whole batch of equally sized RGB images, in one pass.

    Each element gets the very value torchvision computes per image (uint8 -> float32, / 255, - mean, / std):
    those ops are applied once to the 256 possible values of each channel, and the batch is a table look-up
    into them, so the result is bit-identical to stacking the per-image transform's outputs, at a third of
    the cost of even the batched arithmetic.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, len(self.mean), 1, 256)
        table = levels.contiguous().to(torch.float32).div(255)
        table.sub_(torch.tensor(self.mean).view(1, -1, 1, 1)).div_(torch.tensor(self.std).view(1, -1, 1, 1))
        object.__setattr__(self, "_table", table.view(len(self.mean), 256).numpy())

    def __call__(self, images: Sequence[np.ndarray | None], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [size, size, 3] arrays (see `as_pixels`) -> [B, 3, size, size] float32 (zeros where an
        image is None) and the Bool[B] presence mask."""
        mask = torch.tensor([image is not None for image in images], dtype=torch.bool)
        out = np.empty((len(images), len(self.mean), size, size), dtype=np.float32)
        for i, image in enumerate(images):
            if image is None:
                out[i] = 0.0
                continue
            for c, table in enumerate(self._table):
                np.take(table, image[:, :, c], out=out[i, c], mode="clip")  # unbuffered
        return torch.from_numpy(out), mask

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
