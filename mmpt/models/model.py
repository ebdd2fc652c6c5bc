"""The multimodal model: image, text and audio towers projecting into one L2-normalised space."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from mmpt.errors import ConfigError
from mmpt.models.audio import AudioEncoder
from mmpt.models.config import ModelConfig
from mmpt.models.image_text import accepts_trimmed_tokens, build_image_tower, build_text_tower, image_size
from mmpt.models.spec import FULL_MODALITIES, InputSpec

TOWERS: tuple[str, ...] = ("image", "text", "audio", "heads")


@runtime_checkable
class GradCheckpointing(Protocol):
    """A tower that can trade compute for memory (open_clip's towers, timm trunks, AudioEncoder, HFTextTower)."""

    def set_grad_checkpointing(self, enable: bool = True) -> None: ...


class MultimodalModel(nn.Module):
    """Towers for `config.modalities` plus one learnable logit scale (and SigLIP bias) per modality pair.

    Module layout: `clip.visual` and `clip.text` are open_clip's towers (open_clip names kept for export),
    `audio` the audio tower, `logit_scale` / `logit_bias` ParameterDicts keyed by pair name.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        visual: nn.Module | None,
        text: nn.Module | None,
        audio: nn.Module | None,
    ):
        super().__init__()
        self.config = config
        self.modalities: tuple[str, ...] = tuple(config.modalities)
        self.clip = nn.Module()  # container only: keeps open_clip's "visual" / "text" names
        if visual is not None:
            self.clip.visual = visual
        if text is not None:
            self.clip.text = text
        self.audio = audio
        self.logit_scale = nn.ParameterDict(
            {p: nn.Parameter(torch.tensor(float(config.init_logit_scale))) for p in config.pairs}
        )
        self.logit_bias = nn.ParameterDict(
            {p: nn.Parameter(torch.tensor(float(config.init_logit_bias))) for p in config.pairs}
        )
        self.spec = _input_spec(config, text)

    # -- encoders: each returns L2-normalised [N, embed_dim] --------------------------------------
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] (normalised with spec.image_mean/std) -> unit vectors [N, D]."""
        return F.normalize(self._require("image")(pixels), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [N, L] (int64, from build_tokenizer(spec)) -> unit vectors [N, D]."""
        return F.normalize(self._require("text")(tokens), dim=-1)

    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """Mono waveform [N, spec.clip_samples] at spec.sample_rate -> unit vectors [N, D]."""
        return F.normalize(self._require("audio")(wave), dim=-1)

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of one modality; a tower whose parameters are all frozen runs without autograd."""
        fn = {"image": self.encode_image, "text": self.encode_text, "audio": self.encode_audio}[modality]
        if torch.is_grad_enabled() and self.tower_frozen(modality):
            with torch.no_grad():
                return fn(x)
        return fn(x)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Features [B, D] for each of the model's modalities found in `batch`.

        Only rows whose `<modality>_mask` is True go through the tower; the other rows hold zeros, and a
        tower with no such row is not run at all.
        """
        out: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            if m not in batch:
                continue
            x = batch[m]
            n = x.shape[0]
            mask = batch.get(f"{m}_mask")
            if mask is None or m in batch.get(FULL_MODALITIES, ()) or bool(mask.all()):
                out[m] = self.encode(m, x)
                continue
            rows = mask.nonzero().squeeze(1)
            if rows.numel() == 0:
                out[m] = torch.zeros(n, self.config.embed_dim, device=x.device)
                continue
            feats = self.encode(m, x.index_select(0, rows))
            out[m] = feats.new_zeros(n, feats.shape[1]).index_copy(0, rows, feats)
        if out and torch.is_grad_enabled() and len(self.logit_scale):
            # The heads are used by the loss, outside forward. Adding them with zero weight here puts
            # them in forward's graph, so DDP(find_unused_parameters=True) does not mark them unused
            # (and then "ready twice" when the loss's gradient arrives). Values are unchanged.
            first = next(iter(out))
            heads = torch.stack([*self.logit_scale.values(), *self.logit_bias.values()]).sum()
            out[first] = out[first] + 0.0 * heads
        return out

    # -- parameters and utilities -----------------------------------------------------------------
    def tower(self, name: str) -> nn.Module | None:
        """The module of one tower ("image", "text", "audio"), or None if the model lacks it."""
        if name == "image":
            return getattr(self.clip, "visual", None)
        if name == "text":
            return getattr(self.clip, "text", None)
        if name == "audio":
            return self.audio
        raise ValueError(f"unknown tower {name!r}: expected one of {', '.join(TOWERS)}")

    def _require(self, name: str) -> nn.Module:
        module = self.tower(name)
        if module is None:
            raise ValueError(f"this model has no {name} tower (its modalities: {', '.join(self.modalities)})")
        return module

    def tower_parameters(self, name: str) -> Iterator[nn.Parameter]:
        """Parameters of "image", "text", "audio" or "heads" (the logit scales and biases)."""
        if name == "heads":
            yield from self.logit_scale.parameters()
            yield from self.logit_bias.parameters()
            return
        module = self.tower(name)
        if module is not None:
            yield from module.parameters()

    def tower_frozen(self, name: str) -> bool:
        """True when the tower exists and none of its parameters requires a gradient (see train.freeze)."""
        params = list(self.tower_parameters(name))
        return bool(params) and not any(p.requires_grad for p in params)

    def train(self, mode: bool = True) -> MultimodalModel:
        """As nn.Module.train, but a fully frozen tower stays in eval mode (no dropout, fixed norm statistics)."""
        super().train(mode)
        if mode:
            for name in ("image", "text", "audio"):
                module = self.tower(name)
                if module is not None and self.tower_frozen(name):
                    module.eval()
        return self

    def param_count(self) -> dict[str, int]:
        """Number of parameters per tower and in total."""
        counts = {name: sum(p.numel() for p in self.tower_parameters(name)) for name in TOWERS}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in every tower (delegates to open_clip / timm)."""
        for name in ("image", "text", "audio"):
            module = self.tower(name)
            if module is None:
                continue
            if not isinstance(module, GradCheckpointing):
                raise TypeError(
                    f"the {name} tower ({type(module).__name__}) does not support gradient checkpointing"
                )
            module.set_grad_checkpointing(enable)


def _input_spec(cfg: ModelConfig, text: nn.Module | None) -> InputSpec:
    defaults = InputSpec()
    return InputSpec(
        image_size=image_size(cfg) if "image" in cfg.modalities else defaults.image_size,
        image_mean=_rgb(cfg.image_mean),
        image_std=_rgb(cfg.image_std),
        sample_rate=cfg.audio.sample_rate,
        clip_samples=cfg.audio.clip_samples,
        context_length=_context_length(text) if text is not None else defaults.context_length,
        tokenizer=_tokenizer(cfg, text),
        trim_text=accepts_trimmed_tokens(cfg, text),
    )


def _tokenizer(cfg: ModelConfig, text: nn.Module | None) -> str:
    """InputSpec.tokenizer: an HF text tower's resolved local folder (a hub id is looked up once, here)."""
    folder = getattr(text, "folder", None)
    return f"hf:{folder}" if cfg.text_tower.startswith("hf:") and folder is not None else cfg.text_tower


def _rgb(values: list[float]) -> tuple[float, float, float]:
    r, g, b = values  # ModelConfig.validate checked there are 3
    return (r, g, b)


def _context_length(text: nn.Module) -> int:
    """The text tower's `context_length` attribute (see image_text: every text tower has one, an int)."""
    n = getattr(text, "context_length", None)
    if not isinstance(n, int):
        raise ConfigError(f"text tower {type(text).__name__} has no int attribute context_length")
    return n


def build_audio_tower(cfg: ModelConfig) -> nn.Module:
    """The audio tower named by `cfg.audio_tower`: "mmpt" (log-mel ViT) or "hf:<hub id or folder>"."""
    if cfg.audio_tower.startswith("hf:"):
        from mmpt.models.hf_audio import build_hf_audio_tower

        return build_hf_audio_tower(cfg)
    return AudioEncoder(cfg.audio, cfg.embed_dim)


def build_model(cfg: ModelConfig) -> MultimodalModel:
    """Build a randomly initialised model for `cfg` (towers only for `cfg.modalities`)."""
    cfg.validate()
    text = build_text_tower(cfg) if "text" in cfg.modalities else None  # first: cheapest to reject
    visual = build_image_tower(cfg) if "image" in cfg.modalities else None
    audio = build_audio_tower(cfg) if "audio" in cfg.modalities else None
    return MultimodalModel(cfg, visual=visual, text=text, audio=audio)
