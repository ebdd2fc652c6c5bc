"""Text tokenizers for the text towers: CLIP BPE from open_clip, or a local Hugging Face tokenizer folder."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmpt.errors import ConfigError
from mmpt.models.spec import InputSpec

Tokenizer = Callable[[list[str]], torch.Tensor]


def build_tokenizer(spec: InputSpec) -> Tokenizer:
    """A callable turning a list of strings into a LongTensor [N, spec.context_length] of token ids."""
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    if spec.tokenizer == "open_clip":
        return SimpleTokenizer(context_length=spec.context_length)
    if spec.tokenizer.startswith("hf:"):
        # HFTokenizer pads with the tokenizer's pad id, which the HF text tower masks out.
        return HFTokenizer(spec.tokenizer[3:], context_length=spec.context_length)
    raise ConfigError(f"unknown tokenizer {spec.tokenizer!r}: expected 'open_clip' or 'hf:<folder>'")
