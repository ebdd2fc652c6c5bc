"""A pretrained Hugging Face audio encoder as the audio tower (extra `hf`): CLAP's, AST, Whisper's or any AutoModel.

`ModelConfig.audio_tower = "hf:<hub id or folder>"` selects it. The model's own feature extractor runs inside the
tower on the raw waveform batch, so the data pipeline only needs the extractor's sampling rate and a clip
length, which `hf_audio_config` writes into `ModelConfig.audio` (and so into InputSpec). The encoder is pooled
(its pooler or CLAP's projection, else the mean over time) and linearly projected to `embed_dim`; parameters
are `audio.encoder.*` and `audio.proj.weight`, so the freeze policies see one "audio" tower.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mmpt.errors import ConfigError
from mmpt.models.config import ModelConfig
from mmpt.models.sources import HF_PREFIX

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CLAP_TYPES = ("clap", "clap_audio_model")
AST_FRAME_SECONDS = 0.01  # AST's extractor: Kaldi fbank frames every 10 ms, max_length frames per clip


def _model_type(folder: Path) -> str:
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {folder / 'config.json'}: {e}") from None


def load_feature_extractor(folder: Path) -> Any:
    """The model's feature extractor (AutoFeatureExtractor, from the same folder)."""
    try:
        from transformers import AutoFeatureExtractor
    except ImportError:
        raise ConfigError("the Hugging Face audio tower needs transformers: pip install 'mmpt[hf]'") from None
    try:
        return AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(
            f"the Hugging Face model in {folder} has no usable feature extractor "
            f"(preprocessor_config.json): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


def natural_clip_seconds(extractor: Any) -> float | None:
    """The clip length an extractor pads or cuts to (Whisper's chunk, CLAP's max_length_s, AST's frames)."""
    if getattr(extractor, "chunk_length", None):  # Whisper
        return float(extractor.chunk_length)
    if getattr(extractor, "max_length_s", None):  # CLAP
        return float(extractor.max_length_s)
    if type(extractor).__name__ == "ASTFeatureExtractor":
        return round(int(extractor.max_length) * AST_FRAME_SECONDS, 4)
    return None


def hf_audio_config(base: ModelConfig, spec: str | Path, *, clip_seconds: float = 0.0) -> ModelConfig:
    """A copy of `base` whose audio tower is the HF audio encoder `spec` (hub id or folder), with
    `audio.sample_rate` from its feature extractor and `audio.clip_seconds` = `clip_seconds`, else the
    length the extractor works on (Whisper 30 s, CLAP 10 s, AST 10.24 s), else the base's."""
    from mmpt.models.hf_text import tower_name
    from mmpt.models.sources import resolve_hf_model

    folder = resolve_hf_model(str(spec))
    extractor = load_feature_extractor(folder)
    rate = getattr(extractor, "sampling_rate", None)
    if not isinstance(rate, int) or rate <= 0:
        raise ConfigError(f"the feature extractor of {folder} has no sampling_rate")
    d = copy.deepcopy(base.to_dict())
    d["audio_tower"] = f"{HF_PREFIX}{tower_name(spec)}"
    d["audio"]["sample_rate"] = rate
    d["audio"]["clip_seconds"] = float(
        clip_seconds or natural_clip_seconds(extractor) or base.audio.clip_seconds
    )
    if "audio" not in d["modalities"]:
        d["modalities"] = [*d["modalities"], "audio"]
    return ModelConfig.from_dict(d)


def _load_encoder(folder: Path) -> tuple[PreTrainedModel, int, str]:
    """(encoder, width of its pooled output, kind): CLAP's audio model with its projection, Whisper's
    encoder alone, or AutoModel for anything else (AST, wav2vec 2.0, HuBERT, ...)."""
    from transformers import AutoModel, ClapAudioModelWithProjection, WhisperModel

    kind = _model_type(folder)
    if kind in CLAP_TYPES:
        clap = ClapAudioModelWithProjection.from_pretrained(str(folder), local_files_only=True)
        return clap, int(clap.config.projection_dim), "clap"
    if kind == "whisper":
        whisper = WhisperModel.from_pretrained(str(folder), local_files_only=True)
        return whisper.get_encoder(), int(whisper.config.d_model), "whisper"
    model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    width = getattr(model.config, "hidden_size", None)
    if not isinstance(width, int):
        raise ConfigError(
            f"cannot tell the output width of {kind or 'the model'} in {folder} (no hidden_size)"
        )
    return model, width, kind


class HFAudioTower(nn.Module):
    """A transformers audio encoder fed by its own feature extractor, pooled and projected to `embed_dim`.

    While every encoder weight is frozen, the encoder runs in eval mode and without autograd (a locked
    tower is cheap), as in the HF text tower.
    """

    def __init__(self, spec: str, embed_dim: int, *, sample_rate: int, pool: str = "auto"):
        super().__init__()
        from mmpt.models.hf_text import _quiet_transformers
        from mmpt.models.sources import resolve_hf_model

        folder = resolve_hf_model(spec)
        self.extractor = load_feature_extractor(folder)
        if int(self.extractor.sampling_rate) != int(sample_rate):
            raise ConfigError(
                f"audio.sample_rate is {sample_rate} but the feature extractor of {spec} expects "
                f"{self.extractor.sampling_rate}: build the config with hf_audio_config"
            )
        with _quiet_transformers():
            try:
                encoder, width, self.kind = _load_encoder(folder)
            except (OSError, ValueError, TypeError) as e:
                raise ConfigError(
                    f"cannot load the Hugging Face audio model in {folder}: {str(e).splitlines()[0]}"
                ) from None
        if pool == "cls" and self.kind == "clap":
            raise ConfigError("audio.pool 'cls' does not apply to CLAP's audio model: use auto or mean")
        self.encoder: PreTrainedModel = encoder
        self.folder = folder
        self.sample_rate = int(sample_rate)
        self.pool = pool
        if pool == "mean" and self.kind == "clap":
            width = int(self.encoder.config.hidden_size)
        self._inputs = set(inspect.signature(self.encoder.forward).parameters)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=width**-0.5)

    def encoder_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.encoder.parameters())

    def features(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """The extractor's inputs for a waveform batch [N, S] at `sample_rate`, on the encoder's device."""
        clips = [w.detach().float().cpu().numpy() for w in wave]
        kwargs: dict[str, Any] = {"sampling_rate": self.sample_rate, "return_tensors": "pt"}
        if self.kind == "clap":  # clips never exceed the extractor's length: no random crop either way
            kwargs["truncation"] = "fusion" if self.encoder.config.enable_fusion else "rand_trunc"
        feats = self.extractor(clips, **kwargs)
        device = next(self.encoder.parameters()).device
        return {k: v.to(device) for k, v in feats.items() if k in self._inputs and torch.is_tensor(v)}

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Raw mono waveform [N, S] at `sample_rate` -> unnormalised embeddings [N, embed_dim]."""
        feats = self.features(wave)
        grad = torch.is_grad_enabled() and not self.encoder_frozen()
        with torch.set_grad_enabled(grad):
            out = self.encoder(**feats)
            pooled = self._pool(out)
        return self.proj(pooled.to(self.proj.weight.dtype))

    def _pool(self, out: Any) -> torch.Tensor:
        if self.pool == "auto":
            for key in ("audio_embeds", "pooler_output"):
                value = getattr(out, key, None)
                if torch.is_tensor(value):
                    return value.flatten(1)
        hidden = out.last_hidden_state
        if self.pool == "cls":
            return hidden[:, 0]
        return hidden.flatten(2).mean(-1) if hidden.dim() == 4 else hidden.mean(1)  # CLAP: [N, C, F, T]

    def train(self, mode: bool = True) -> HFAudioTower:
        super().train(mode)
        if mode and self.encoder_frozen():
            self.encoder.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if not getattr(self.encoder, "supports_gradient_checkpointing", False):
            raise TypeError(f"the {self.kind} audio encoder does not support gradient checkpointing")
        if enable:
            self.encoder.gradient_checkpointing_enable()
        else:
            self.encoder.gradient_checkpointing_disable()


def build_hf_audio_tower(cfg: ModelConfig) -> HFAudioTower:
    """The HF audio tower of a config whose `audio_tower` is "hf:<hub id or folder>"."""
    return HFAudioTower(
        cfg.audio_tower, cfg.embed_dim, sample_rate=cfg.audio.sample_rate, pool=cfg.audio.pool
    )
