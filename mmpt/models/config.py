"""Model configuration: plain, TOML-serialisable dataclasses (no None anywhere: TOML has no null)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mmpt.errors import ConfigError

MODALITIES: tuple[str, ...] = ("image", "text", "audio")
PAIRS: tuple[str, ...] = ("image_text", "audio_text", "image_audio")
IMAGE_TOWERS: tuple[str, ...] = ("open_clip", "conv")
AUDIO_POOLS: tuple[str, ...] = ("auto", "mean", "cls")
OPENAI_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def pair_modalities(pair: str) -> tuple[str, str]:
    """The two modalities of a canonical pair name, e.g. "audio_text" -> ("audio", "text")."""
    if pair not in PAIRS:
        raise ConfigError(f"unknown modality pair {pair!r}: expected one of {', '.join(PAIRS)}")
    a, b = pair.split("_")
    return a, b


def model_pairs(modalities: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The canonical pairs whose two modalities are both in `modalities`."""
    return tuple(p for p in PAIRS if all(m in modalities for m in p.split("_")))


def tiny_clip_config() -> dict[str, Any]:
    """open_clip config of the tiny image and text towers (64 px images, 32-token text)."""
    return {
        "embed_dim": 128,
        "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 3, "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
    }


@dataclass
class AudioConfig:
    """Log-mel front end and spectrogram-patch ViT of the audio tower (defaults: the tiny preset)."""

    sample_rate: int = 16_000
    clip_seconds: float = 1.0
    n_mels: int = 64
    n_fft: int = 400  # 25 ms at 16 kHz
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    f_min: float = 0.0
    f_max: float = 0.0  # 0 means sample_rate / 2
    top_db: float = 80.0
    norm_mean: float = -30.0  # fixed dB normalisation: (db - norm_mean) / norm_std
    norm_std: float = 25.0
    spec_augment: bool = False  # frequency/time masking, applied only in training mode
    freq_mask: int = 8
    time_mask: int = 20
    patch_size: int = 16
    width: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    token_dropout: float = 0.0  # share of spectrogram patches dropped in training (FLIP-style); off at eval
    pool: str = "auto"  # an HF audio tower's pooling: auto (its pooler / projection, else mean), mean or cls

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        """Spectrogram frames fed to the ViT: the STFT frames padded up to a multiple of the patch size."""
        stft_frames = self.clip_samples // self.hop_length + 1
        return math.ceil(stft_frames / self.patch_size) * self.patch_size

    def validate(self) -> None:
        positive = (
            "sample_rate",
            "n_mels",
            "n_fft",
            "win_length",
            "hop_length",
            "patch_size",
            "width",
            "depth",
            "heads",
            "norm_std",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"audio.{name} must be positive, got {getattr(self, name)}")
        if self.clip_seconds <= 0:
            raise ConfigError(f"audio.clip_seconds must be positive, got {self.clip_seconds}")
        if self.n_mels % self.patch_size:
            raise ConfigError(
                f"audio.n_mels ({self.n_mels}) must be a multiple of audio.patch_size ({self.patch_size})"
            )
        if not 0.0 <= self.token_dropout < 1.0:
            raise ConfigError(f"audio.token_dropout must be in [0, 1), got {self.token_dropout}")
        if self.width % self.heads:
            raise ConfigError(f"audio.width ({self.width}) must be divisible by audio.heads ({self.heads})")
        if self.pool not in AUDIO_POOLS:
            raise ConfigError(f"audio.pool must be one of {', '.join(AUDIO_POOLS)}, got {self.pool!r}")
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"audio.win_length ({self.win_length}) must not exceed audio.n_fft ({self.n_fft})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioConfig:
        return cls(**_known_keys(cls, d, "audio"))


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model's architecture (defaults: the tiny preset).

    `clip` is the open_clip model config (embed_dim, vision_cfg, text_cfg, quick_gelu) of the image and
    text towers, kept in full so a run is reproducible without the JSON it came from.
    """

    name: str = "tiny"
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    embed_dim: int = 128
    clip: dict[str, Any] = field(default_factory=tiny_clip_config)
    text_tower: str = "open_clip"  # "open_clip": the open_clip text transformer in `clip.text_cfg`
    image_tower: str = (
        "open_clip"  # "open_clip": open_clip's vision tower; "conv": mmpt.models.conv (no export)
    )
    audio: AudioConfig = field(default_factory=AudioConfig)
    # "mmpt": the log-mel ViT of `audio`; "hf:<hub id or folder>": a pretrained HF audio encoder (its feature
    # extractor inside the tower; `audio.sample_rate` / `clip_seconds` then follow the extractor)
    audio_tower: str = "mmpt"
    image_mean: list[float] = field(default_factory=lambda: list(OPENAI_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(OPENAI_STD))
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = math.log(100)
    init_logit_bias: float = -10.0  # used by the SigLIP loss only

    def __post_init__(self) -> None:
        if isinstance(self.audio, dict):
            self.audio = AudioConfig.from_dict(self.audio)
        self.modalities = list(self.modalities)
        self.image_mean = [float(v) for v in self.image_mean]
        self.image_std = [float(v) for v in self.image_std]
        self.clip = toml_safe(dict(self.clip))
        self.clip["embed_dim"] = self.embed_dim  # one source of truth for the shared dimension
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on an inconsistent config (checked on construction)."""
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"modalities must be a non-empty list without repeats, got {self.modalities}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown:
            raise ConfigError(f"unknown modalities {unknown}: expected some of {', '.join(MODALITIES)}")
        self.modalities = [m for m in MODALITIES if m in self.modalities]  # canonical order
        if self.embed_dim <= 0:
            raise ConfigError(f"embed_dim must be positive, got {self.embed_dim}")
        for key, needed in (("vision_cfg", "image"), ("text_cfg", "text")):
            if needed in self.modalities and not isinstance(self.clip.get(key), dict):
                raise ConfigError(f"model config 'clip' needs a '{key}' table for the {needed} tower")
        if not (self.text_tower == "open_clip" or self.text_tower.startswith("hf:")):
            raise ConfigError(
                f"text_tower must be 'open_clip' or 'hf:<hub id or folder>', got {self.text_tower!r}"
            )
        if not (self.audio_tower == "mmpt" or self.audio_tower.startswith("hf:")):
            raise ConfigError(
                f"audio_tower must be 'mmpt' or 'hf:<hub id or folder>', got {self.audio_tower!r}"
            )
        if self.image_tower not in IMAGE_TOWERS:
            raise ConfigError(
                f"image_tower must be one of {', '.join(IMAGE_TOWERS)}, got {self.image_tower!r}"
            )
        if self.image_tower == "conv" and "image" in self.modalities:
            from mmpt.models.conv import check_conv_config

            check_conv_config(self.clip["vision_cfg"])
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ConfigError("image_mean and image_std must hold 3 values (RGB)")
        if self.max_logit_scale <= 0:
            raise ConfigError(f"max_logit_scale must be positive, got {self.max_logit_scale}")
        self.audio.validate()

    @property
    def pairs(self) -> tuple[str, ...]:
        """The modality pairs this model has a logit scale for."""
        return model_pairs(self.modalities)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a dict: missing keys take their defaults, unknown keys raise ConfigError."""
        kw = _known_keys(cls, d, "model")
        if "audio" in kw:
            kw["audio"] = AudioConfig.from_dict(kw["audio"])
        if "embed_dim" not in kw and "embed_dim" in kw.get("clip", {}):
            kw["embed_dim"] = int(kw["clip"]["embed_dim"])
        try:
            return cls(**kw)
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"invalid model config: {e}") from None


def _known_keys(cls: type, d: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} config must be a table, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {where} config keys {unknown}; known: {', '.join(sorted(names))}")
    return dict(d)


# open_clip config keys whose null means something other than the field's default: map to the
# equivalent non-null value (TimmModel treats timm_proj None and "" alike; its default is "linear").
_NULL_EQUIVALENTS = {"timm_proj": ""}


def toml_safe(value: Any) -> Any:
    """A copy of a JSON-like config without None: null keys are dropped (open_clip's default is then
    the same None) except the few in _NULL_EQUIVALENTS; tuples become lists."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None:
                if k in _NULL_EQUIVALENTS:
                    out[k] = _NULL_EQUIVALENTS[k]
                continue
            out[k] = toml_safe(v)
        return out
    if isinstance(value, (list, tuple)):
        return [toml_safe(v) for v in value if v is not None]
    return value
