"""Audio tower: a log-mel front end and a ViT over spectrogram patches (timm), projecting to the shared space."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmpt.models.config import AudioConfig


class LogMelFrontEnd(nn.Module):
    """Waveform [N, S] -> normalised log-mel spectrogram [N, 1, n_mels, n_frames], on the model's device.

    Each clip is converted on its own (per-clip top_db cut-off), so results do not depend on the batch.
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        import torchaudio.transforms as T

        self.cfg = cfg
        with torch.device("cpu"):  # fixed buffers computed eagerly, even when building on "meta"
            self._build(cfg, T)
        # The window and mel filterbank follow from the config: keep them out of checkpoints.
        for module in self.modules():
            for name, buf in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buf.clone(), persistent=False)

    def _build(self, cfg: AudioConfig, T: ModuleType) -> None:
        self.mel = T.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max or None,
            n_mels=cfg.n_mels,
            power=2.0,
        )
        self.to_db = T.AmplitudeToDB(stype="power", top_db=cfg.top_db or None)
        self.freq_mask = T.FrequencyMasking(cfg.freq_mask, iid_masks=True)
        self.time_mask = T.TimeMasking(cfg.time_mask, iid_masks=True)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        with torch.autocast(wave.device.type, enabled=False):
            spec = self.mel(wave.float()).unsqueeze(1)  # [N, 1, n_mels, frames]
            spec = (self.to_db(spec) - cfg.norm_mean) / cfg.norm_std
        if self.training and cfg.spec_augment:
            spec = self.time_mask(self.freq_mask(spec))
        frames = spec.shape[-1]
        if frames < cfg.n_frames:
            spec = F.pad(spec, (0, cfg.n_frames - frames))  # 0 = the normalised mean level
        return spec[..., : cfg.n_frames]


class AudioEncoder(nn.Module):
    """Log-mel front end + timm VisionTransformer over (patch x patch) spectrogram patches; the ViT's
    classifier head is the projection to `embed_dim`.

    Attention is timm's, which calls F.scaled_dot_product_attention (flash / memory-efficient kernels on
    CUDA). `cfg.token_dropout` drops that share of the patch tokens in training mode only (FLIP-style, timm's
    PatchDropout, the class token kept): shorter sequences, so cheaper steps; eval and embedding see them all.
    """

    def __init__(self, cfg: AudioConfig, embed_dim: int):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.cfg = cfg
        self.frontend = LogMelFrontEnd(cfg)
        self.vit = VisionTransformer(
            img_size=(cfg.n_mels, cfg.n_frames),
            patch_size=cfg.patch_size,
            in_chans=1,
            num_classes=embed_dim,
            embed_dim=cfg.width,
            depth=cfg.depth,
            num_heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            drop_path_rate=cfg.drop_path,
            patch_drop_rate=cfg.token_dropout,
            global_pool="token",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Raw mono waveform [N, clip_samples] -> unnormalised embeddings [N, embed_dim]."""
        return self.vit(self.frontend(wave))

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """torch.compile the ViT in place; the log-mel front end stays eager (its complex STFT gains nothing
        from code generation, and torchaudio's torch.jit.isinstance checks would break the graph)."""
        self.vit.compile(*args, **kwargs)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vit.set_grad_checkpointing(enable)
