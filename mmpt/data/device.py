"""The main process's side of a batch: copy it to the device and finish what workers left for the GPU.

`to_device` copies every tensor with `non_blocking` (the DataLoader pins them when CUDA is present) and, for
a `gpu_jpeg_decode` loader, decodes the JPEG bytes the workers passed on with nvJPEG
(`torchvision.io.decode_jpeg(device=...)`), then resizes, centre-crops and normalises them on the device as
the CPU path does (a gpu_jpeg_decode BatchLoader calls it itself, so its batches arrive on the GPU).
`prefetch` keeps the next batch's copy in flight on a side CUDA stream while the current one computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from mmpt.data.reader import JPEG_BYTES, JPEG_ROWS, JPEG_SIZES
from mmpt.models.spec import FULL_MODALITIES, InputSpec


def to_device(batch: dict[str, Any], device: torch.device, spec: InputSpec | None = None) -> dict[str, Any]:
    """The batch with its tensors on `device`; JPEG bytes left by a gpu_jpeg_decode loader are decoded there
    into `image` (their rows' `image_mask` set), which needs the model's `spec`."""
    data, sizes, rows = (batch.pop(k, None) for k in (JPEG_BYTES, JPEG_SIZES, JPEG_ROWS))
    full = frozenset(  # read on the CPU copy: on the device it would cost a sync per tower
        k[: -len("_mask")]
        for k, v in batch.items()
        if k.endswith("_mask") and torch.is_tensor(v) and v.device.type == "cpu" and bool(v.all())
    )
    if data is not None:  # rows whose JPEG fails on the device are masked out after the copy
        full -= {"image"}
    out = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    out[FULL_MODALITIES] = full | batch.get(FULL_MODALITIES, frozenset())
    if data is not None and len(sizes):
        if spec is None:
            raise ValueError("the batch holds undecoded JPEGs: pass the model's InputSpec to decode them")
        images, ok = decode_jpegs(list(data.split(sizes.tolist())), spec, device)
        index = rows.to(device, non_blocking=True)[ok.to(device)]
        out["image"][index] = images[ok.to(images.device)]
        out["image_mask"][index] = True
    return out


def decode_jpegs(
    jpegs: list[torch.Tensor], spec: InputSpec, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """JPEG byte tensors -> normalised float32 [N, 3, size, size] on `device` and a Bool[N] of those that
    decoded (a corrupt one is zeros, marked False): shorter side resized to `size` (bicubic, antialiased),
    centre crop, rounded to uint8 levels, then (x / 255 - mean) / std as on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    size = spec.image_size
    out = torch.zeros((len(jpegs), 3, size, size), dtype=torch.float32, device=device)
    ok = torch.zeros(len(jpegs), dtype=torch.bool)
    try:
        decoded = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # one corrupt image fails the batched call: decode one by one to find it
        decoded = []
        for data in jpegs:
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
    for i, image in enumerate(decoded):
        if image is not None:
            out[i] = _resize_crop(image, size)
            ok[i] = True
    mean = torch.tensor(spec.image_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.image_std, device=device).view(1, 3, 1, 1)
    out.div_(255).sub_(mean).div_(std)
    out[~ok.to(device)] = 0.0
    return out, ok


def _resize_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> float32 [3, size, size] in uint8 levels: torchvision's Resize(size) + CenterCrop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    resized = F.resize(image.float(), [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return F.center_crop(resized, [size, size]).round_().clamp_(0, 255)


def prefetch(
    batches: Iterable[dict[str, Any]], device: torch.device, spec: InputSpec | None = None
) -> Iterator[dict[str, Any]]:
    """`to_device` of each batch, one batch ahead on a side CUDA stream so the copy (and JPEG decode)
    overlaps the current step; on other devices, plain `to_device` in turn."""
    if device.type != "cuda":
        for batch in batches:
            yield to_device(batch, device, spec)
        return
    stream = torch.cuda.Stream(device)
    pending: dict[str, Any] | None = None
    for batch in batches:
        with torch.cuda.stream(stream):
            ready = to_device(batch, device, spec)
        if pending is not None:
            yield pending
        torch.cuda.current_stream(device).wait_stream(stream)
        for (
            value
        ) in ready.values():  # the step's stream uses these: keep the allocator from reusing them early
            if torch.is_tensor(value) and value.is_cuda:
                value.record_stream(torch.cuda.current_stream(device))
        pending = ready
    if pending is not None:
        yield pending
