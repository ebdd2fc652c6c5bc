"""Inference on a trained run: its name, its checkpoint, and an `Encoder` that embeds raw texts, images and sounds.

`load_model(run)` gives an `Encoder` (text, images, audio -> unit vectors). Column names use the run's *name*:
the run directory's name, sanitised to letters, digits, `_` and `-` (see `run_name`). The dataset-level work
(embedding columns, search) is in `mmpt.embed.api`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from mmpt.embed.columns import as_run_name, check_run_name, run_name  # noqa: F401  (re-exported)
from mmpt.errors import ConfigError, DataError
from mmpt.store.limits import DEFAULT_LIMITS, ReadLimits, Refused
from mmpt.store.schema import MODALITIES

if TYPE_CHECKING:
    from PIL import Image

    from mmpt.data.transforms import ImageTransform
    from mmpt.models.model import MultimodalModel
    from mmpt.models.tokenizer import Tokenizer

ImageInput = Any  # PIL.Image.Image | str | Path | bytes
AudioInput = Any  # np.ndarray | torch.Tensor | str | Path | bytes


# -- run names and checkpoints -----------------------------------------------------------------------


def checkpoint_dir(run_or_checkpoint: str | Path) -> Path:
    """The checkpoint folder holding the weights: the folder itself, or a run's latest checkpoint."""
    from mmpt.runs import RunDir

    path = Path(run_or_checkpoint)
    if (path / "model.safetensors").is_file():
        return path
    if not path.exists():
        raise ConfigError(f"run not found: {path}")
    return RunDir.open(path).require_checkpoint()  # the newest intact one; corrupt ones are skipped, and said


def model_modalities(run_or_checkpoint: str | Path) -> tuple[str, ...]:
    """The modalities a run's model embeds, read from its config without loading the weights."""
    from mmpt.models.checkpoint import load_config

    return tuple(load_config(checkpoint_dir(run_or_checkpoint)).modalities)


def require_modality(modality: str, has: Sequence[str], who: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    if modality not in has:
        raise ConfigError(f"{who} has no {modality} tower; it embeds {', '.join(has)}")


# -- the encoder -------------------------------------------------------------------------------------


class Encoder:
    """A run's model ready for inference on raw inputs: texts, images (PIL or files), audio (arrays or files).

    Every `embed_*` returns L2-normalised float32 [N, D], computed in batches without gradients
    (bf16 autocast on CUDA). Inputs go through the same eval transforms as the dataset loader. Files and
    encoded bytes are read under `limits` (ingest's read limits: regular files only, size, pixels, audio length).
    """

    def __init__(
        self,
        model: MultimodalModel,
        device: str | torch.device = "auto",
        *,
        batch_size: int = 64,
        source: str = "model",
        limits: ReadLimits = DEFAULT_LIMITS,
    ) -> None:
        from mmpt.embed.compute import pick_device

        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.model = model.eval().to(self.device)
        self.spec = model.spec
        self.modalities: tuple[str, ...] = tuple(model.modalities)
        self.dim = int(model.config.embed_dim)
        self.batch_size = batch_size
        self.source = source
        self.limits = limits
        self._tokenizer: Tokenizer | None = None
        self._transform: ImageTransform | None = None

    def __repr__(self) -> str:
        return f"Encoder({self.source!r}, modalities={self.modalities}, dim={self.dim}, device={self.device})"

    def _encode(
        self, modality: str, items: Sequence[Any], prepare: Callable[[list[Any]], torch.Tensor]
    ) -> np.ndarray:
        require_modality(modality, self.modalities, f"model {self.source}")
        out = []
        for start in range(0, len(items), self.batch_size):
            x = prepare(list(items[start : start + self.batch_size])).to(self.device)
            with (
                torch.no_grad(),
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"),
            ):
                features = self.model.encode(modality, x)
            out.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> [N, D] with the model's tokenizer."""
        if isinstance(texts, str):
            raise DataError("embed_text takes a list of strings, not one string")
        require_modality("text", self.modalities, f"model {self.source}")
        if self._tokenizer is None:
            from mmpt.models.tokenizer import build_tokenizer

            self._tokenizer = build_tokenizer(self.spec, trim=True)
        tokenize = self._tokenizer
        return self._encode("text", texts, lambda batch: tokenize([str(t) for t in batch]).long())

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """PIL images, image file paths or encoded bytes -> [N, D] (RGB, eval resize + centre crop)."""
        if isinstance(images, str | Path | bytes) or hasattr(images, "getpixel"):
            raise DataError("embed_images takes a list of images, not one image")
        require_modality("image", self.modalities, f"model {self.source}")
        if self._transform is None:
            from mmpt.data.transforms import build_image_transform

            self._transform = build_image_transform(self.spec)
        transform, limits = self._transform, self.limits
        return self._encode(
            "image", images, lambda batch: torch.stack([transform(_image(i, limits)) for i in batch])
        )

    def embed_audio(self, clips: Sequence[AudioInput], sample_rate: int | None = None) -> np.ndarray:
        """Waveforms (at the model's rate unless `sample_rate` is given), audio files or bytes -> [N, D].

        Multi-channel arrays are averaged to mono (the shorter axis is taken as channels); clips are
        centre-cropped or repeat-padded to the model's clip length, as in the dataset loader.
        """
        from mmpt.data.audio import fit_length

        if isinstance(clips, str | Path | bytes) or (getattr(clips, "ndim", 2) == 1):
            raise DataError("embed_audio takes a list of clips, not one clip")

        def prepare(batch: list[Any]) -> torch.Tensor:
            waves = [_wave(c, sample_rate, self.spec.sample_rate, self.limits) for c in batch]
            return torch.stack([fit_length(w, self.spec.clip_samples) for w in waves])

        return self._encode("audio", clips, prepare)


def _image(item: ImageInput, limits: ReadLimits = DEFAULT_LIMITS) -> Image.Image:
    """One image input as an RGB PIL image; a file or bytes over the read limits (a decompression bomb, a
    device such as /dev/zero) is a one-line DataError, found before anything is decoded."""
    from PIL import Image

    from mmpt.store.media_headers import open_image_checked

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, bytes | bytearray | str | Path):
        where = "image (bytes)" if isinstance(item, bytes | bytearray) else f"image {item}"
        data = bytes(item) if isinstance(item, bytes | bytearray) else _read_file(Path(item), "image", limits)
        if len(data) > limits.max_blob_bytes:
            raise DataError(f"{where}: {len(data):,} bytes, over the {limits.max_blob_bytes:,}-byte limit")
        try:
            with open_image_checked(data, limits) as img:
                return img.convert("RGB")
        except Refused as refused:
            raise DataError(f"{where}: {refused.reason}") from None
        except Exception as exc:
            raise DataError(f"cannot decode {where}: {exc}") from exc
    raise DataError(f"expected a PIL image, a path or bytes, got {type(item).__name__}")


def _wave(
    item: AudioInput, sample_rate: int | None, target: int, limits: ReadLimits = DEFAULT_LIMITS
) -> torch.Tensor:
    """One audio input as a mono float32 waveform at `target` Hz; files and bytes are checked against the read
    limits (size, duration and sample count from the header) before decoding."""
    from torchaudio.functional import resample

    from mmpt.data.audio import decode_audio
    from mmpt.store.media_headers import check_audio_bytes

    if isinstance(item, str | Path | bytes | bytearray):
        where = "audio (bytes)" if isinstance(item, bytes | bytearray) else f"audio {item}"
        data = bytes(item) if isinstance(item, bytes | bytearray) else _read_file(Path(item), "audio", limits)
        if len(data) > limits.max_blob_bytes:
            raise DataError(f"{where}: {len(data):,} bytes, over the {limits.max_blob_bytes:,}-byte limit")
        try:
            check_audio_bytes(data, limits)
        except Refused as refused:
            raise DataError(f"{where}: {refused.reason}") from None
        try:
            return decode_audio(data, target)
        except Exception as exc:
            raise DataError(f"cannot decode {where}: {exc}") from exc
    wave = torch.as_tensor(np.asarray(item, dtype=np.float32) if not torch.is_tensor(item) else item).float()
    if wave.ndim == 2:
        wave = wave.mean(dim=int(np.argmin(wave.shape)))
    if wave.ndim != 1 or wave.numel() == 0:
        raise DataError(f"expected a mono or multi-channel waveform, got shape {tuple(wave.shape)}")
    if sample_rate is not None and int(sample_rate) != target:
        wave = resample(wave, int(sample_rate), int(target))
    return wave


def _read_file(path: Path, modality: str, limits: ReadLimits) -> bytes:
    """A user-given media file under the read limits: a regular file of at most `limits.max_blob_bytes`
    (the caller named it, so symlinks are followed)."""
    from mmpt.store.safe_read import read_path

    try:
        return read_path(path, limits.max_blob_bytes, what=modality)
    except Refused as refused:
        raise DataError(refused.reason) from None


_encoders: dict[tuple[str, float, str], Encoder] = {}


def load_model(run_or_checkpoint: str | Path, device: str = "auto", *, batch_size: int = 64) -> Encoder:
    """The `Encoder` of a run's latest checkpoint (or of a checkpoint folder); reused while the weights are unchanged."""
    from mmpt.embed.compute import pick_device
    from mmpt.models.checkpoint import load_model as load_checkpoint

    ckpt = checkpoint_dir(run_or_checkpoint)
    dev = pick_device(device)
    key = (str(ckpt.resolve()), (ckpt / "model.safetensors").stat().st_mtime, str(dev))
    if key not in _encoders:
        _encoders.clear()  # keep one model in memory
        _encoders[key] = Encoder(load_checkpoint(ckpt), dev, source=str(run_or_checkpoint))
    encoder = _encoders[key]
    encoder.batch_size = batch_size
    return encoder
