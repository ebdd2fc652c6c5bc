"""open_clip's text transformer taking token tensors cut to the batch's longest caption (padding trimmed).

With a causal mask and pooling at the EOT token, positions after a batch's longest caption change neither
the pooled output nor any gradient, so `mmpt.models.tokenizer.trim_padding` may drop those columns. open_clip
slices its causal mask to a shorter input only in its padding-mask / CLS modes; `TrimmableTextTransformer`
slices it always. `allow_trimmed_tokens` switches a built tower to it by class (same module, parameters,
buffers and state_dict keys, still an open_clip `TextTransformer`) when trimming leaves its output unchanged.
"""

from __future__ import annotations

import torch
from open_clip.transformer import TextTransformer
from torch import nn

EOT_POOLS = ("argmax", "eos")  # open_clip pool types that read the EOT token's position


class TrimmableTextTransformer(TextTransformer):
    """open_clip's TextTransformer whose causal mask is cut to the input length (shorter inputs allowed)."""

    def _embeds(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, attn_mask = super()._embeds(text)
        n = x.shape[1]
        if attn_mask is not None and attn_mask.ndim == 2 and attn_mask.shape[0] != n:
            attn_mask = attn_mask[:n, :n]
        return x, attn_mask


def trimming_is_exact(tower: nn.Module) -> bool:
    """True when `tower` is open_clip's plain TextTransformer and cutting trailing padding columns leaves its
    output unchanged: causal mask, no CLS token, EOT pooling (an "eos" id other than the pad id 0), no tokens out."""
    return (
        type(tower) in (TextTransformer, TrimmableTextTransformer)
        and getattr(tower, "attn_mask", None) is not None
        and getattr(tower, "cls_emb", None) is None
        and not getattr(tower, "use_pad_mask", False)
        and getattr(tower, "pool_type", None) in EOT_POOLS
        and not (tower.pool_type == "eos" and getattr(tower, "eos_id", None) == 0)
        and not getattr(tower, "output_tokens", True)
    )


def allow_trimmed_tokens(tower: nn.Module) -> nn.Module:
    """`tower` itself, made a TrimmableTextTransformer when `trimming_is_exact(tower)`; else unchanged."""
    if trimming_is_exact(tower):
        tower.__class__ = TrimmableTextTransformer
    return tower
