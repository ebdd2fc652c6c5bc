"""Text tokenizers for the text towers: CLIP BPE from open_clip, or a local Hugging Face tokenizer folder."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmpt.errors import ConfigError
from mmpt.models.spec import InputSpec

Tokenizer = Callable[[list[str]], torch.Tensor]
PAD_ID = 0  # what the CLIP BPE tokenizer pads with (open_clip's SimpleTokenizer)


def build_tokenizer(spec: InputSpec, *, trim: bool = False) -> Tokenizer:
    """A callable turning a list of strings into a LongTensor [N, spec.context_length] of token ids; with
    `trim` and `spec.trim_text`, [N, L'] cut to the call's longest text (`trim_padding`)."""
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    tokenize: Tokenizer
    if spec.tokenizer == "open_clip":
        tokenize = SimpleTokenizer(context_length=spec.context_length)
    elif spec.tokenizer.startswith("hf:"):
        # HFTokenizer pads with the tokenizer's pad id, which the HF text tower masks out.
        tokenize = HFTokenizer(spec.tokenizer[3:], context_length=spec.context_length)
    else:
        raise ConfigError(f"unknown tokenizer {spec.tokenizer!r}: expected 'open_clip' or 'hf:<folder>'")
    return TrimmedTokenizer(tokenize) if trim and spec.trim_text else tokenize


class TrimmedTokenizer:
    """A tokenizer whose output has its trailing padding columns cut (`trim_padding`); picklable."""

    def __init__(self, tokenize: Tokenizer) -> None:
        self.tokenize = tokenize

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return trim_padding(self.tokenize(texts))


def trim_padding(tokens: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """Token ids [N, L] without the trailing columns that are padding in every row, keeping at least one and
    rounding the kept length up to a multiple of `multiple` (tensor-core friendly, few distinct shapes for
    torch.compile), never above L. `tokens` itself when nothing is cut, else a contiguous copy."""
    if tokens.ndim != 2:
        raise ValueError(f"trim_padding takes token ids [N, L], got a tensor of shape {tuple(tokens.shape)}")
    if multiple < 1:
        raise ValueError(f"trim_padding: multiple must be at least 1, got {multiple}")
    length = tokens.shape[1]
    used = tokens.ne(PAD_ID).any(dim=0).nonzero()
    last = int(used[-1]) + 1 if used.numel() else 0
    keep = min(length, -(-max(last, 1) // multiple) * multiple)
    return tokens if keep >= length else tokens[:, :keep].contiguous()
