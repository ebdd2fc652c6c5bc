"""Pairwise contrastive loss over the modality pairs present in a batch: CLIP InfoNCE or SigLIP.

Each pair uses only the rows holding both of its modalities. Under DDP every rank gathers all ranks'
features and masks (no gradient, so backward runs no collective of its own and cannot deadlock with
DDP's all-reduces when ranks skip different towers), puts its own rows back in with gradient, and
computes the whole global loss. Its own rows' gradient is scaled by world_size, so DDP's averaging
yields exactly the single-process gradient over the global batch, whatever the valid rows per rank.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from functools import reduce

import torch
import torch.nn.functional as F
from torch import nn

from mmpt.errors import ConfigError
from mmpt.models.config import MODALITIES, PAIRS, pair_modalities
from mmpt.train import distributed as D

KINDS: tuple[str, ...] = ("clip", "siglip")

# Per-pair logit scales (or biases): a model's ParameterDict, or any mapping pair name -> scalar tensor.
Heads = Mapping[str, torch.Tensor] | nn.ParameterDict


def canonical_pair(name: str) -> str:
    """ "image-text", "text_image", ... -> the canonical pair name ("image_text")."""
    parts = name.strip().replace("-", "_").split("_")
    if len(parts) == 2 and all(p in MODALITIES for p in parts):
        for pair in PAIRS:
            if set(pair.split("_")) == set(parts) and parts[0] != parts[1]:
                return pair
    raise ConfigError(f"unknown modality pair {name!r}: expected one of image-text, audio-text, image-audio")


def parse_pairs(spec: str | Sequence[str]) -> list[str]:
    """Pairs from "image-text,audio-text" (or a list of names; "all" = every pair), canonical order."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n for n in (s.strip() for s in names) if n]
    if names == ["all"]:
        return list(PAIRS)
    if not names:
        raise ConfigError("no modality pairs given: expected e.g. image-text,audio-text,image-audio")
    chosen = {canonical_pair(n) for n in names}
    return [p for p in PAIRS if p in chosen]


class ContrastiveLoss(nn.Module):
    """Weighted sum over `pairs` of symmetric InfoNCE ("clip") or sigmoid ("siglip") losses.

    Call with (features, masks, logit_scale, logit_bias) — the model's ParameterDicts — or with
    (features, masks, model). Returns (total, {pair: loss}): the global-batch values on every rank,
    per pair detached for logging; `total`'s gradient is this rank's share (see the module docstring).
    Pairs with fewer than 2 valid rows in the global batch add nothing and are left out of the dict.
    """

    def __init__(
        self,
        pairs: Sequence[str] = PAIRS,
        weights: Mapping[str, float] | None = None,
        kind: str = "clip",
        max_logit_scale: float = math.log(100),
    ):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown loss {kind!r}: expected one of {', '.join(KINDS)}")
        self.pairs = parse_pairs(pairs)
        self.weights = {p: 1.0 for p in self.pairs}
        for name, w in (weights or {}).items():
            pair = canonical_pair(name)
            if pair not in self.weights:
                raise ConfigError(f"loss weight given for pair {pair!r}, which is not trained ({self.pairs})")
            self.weights[pair] = float(w)
        self.kind = kind
        self.max_logit_scale = float(max_logit_scale)

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        logit_scale: Heads | nn.Module,
        logit_bias: Heads | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logit_scale, logit_bias = _heads(logit_scale, logit_bias)
        if self.kind == "siglip" and logit_bias is None:
            raise ConfigError("the siglip loss needs the model's logit_bias")

        pairs = [p for p in self.pairs if all(m in features for m in pair_modalities(p))]
        used = [m for m in MODALITIES if any(m in pair_modalities(p) for p in pairs)]
        if not used:
            return _zero(features, logit_scale), {}

        rank, world = D.get_rank(), D.get_world_size()
        n_local = features[used[0]].shape[0]
        counts = D.gather_counts(n_local, features[used[0]].device)
        offset = sum(counts[:rank])
        local_masks = torch.stack([_mask(masks, m, features[m]) for m in used], dim=1)
        all_masks = dict(zip(used, D.gather(local_masks, counts).unbind(1), strict=True))
        global_feats: dict[str, torch.Tensor] = {}

        per_pair: dict[str, torch.Tensor] = {}
        for pair in pairs:  # every branch below depends on global data only: same collectives on all ranks
            a, b = pair_modalities(pair)
            if world == 1 and masks.get(a) is None and masks.get(b) is None:
                valid, n_valid = None, n_local  # every row holds both: no mask arithmetic, no host sync
            else:
                valid = all_masks[a] & all_masks[b]
                n_valid = int(valid.sum())
            if n_valid < 2:
                continue
            for m in (a, b):
                if m not in global_feats:
                    global_feats[m] = _global_features(features[m].float(), counts, offset, world)
            fa, fb = global_feats[a], global_feats[b]
            if valid is not None:
                fa, fb = fa[valid], fb[valid]
            scale = logit_scale[pair].clamp(max=self.max_logit_scale).exp()
            logits = scale * fa @ fb.T
            if self.kind == "clip":
                labels = torch.arange(n_valid, device=logits.device)
                per_pair[pair] = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            else:
                assert logit_bias is not None  # checked above for siglip
                signs = 2 * torch.eye(n_valid, device=logits.device, dtype=logits.dtype) - 1
                per_pair[pair] = -F.logsigmoid(signs * (logits + logit_bias[pair])).sum() / n_valid

        if not per_pair:
            return _zero(features, logit_scale), {}
        total: torch.Tensor = reduce(operator.add, (self.weights[p] * loss for p, loss in per_pair.items()))
        return total, {p: loss.detach() for p, loss in per_pair.items()}


def _heads(logit_scale: Heads | nn.Module, logit_bias: Heads | None) -> tuple[Heads, Heads | None]:
    """The logit scale and bias tables; a model (or its DDP / compiled wrapper) stands in for its own."""
    if isinstance(logit_scale, Mapping | nn.ParameterDict):
        return logit_scale, logit_bias
    model = getattr(logit_scale, "module", logit_scale)  # unwrap DistributedDataParallel
    scale, bias = getattr(model, "logit_scale", None), getattr(model, "logit_bias", None)
    if not isinstance(scale, nn.ParameterDict) or not isinstance(bias, nn.ParameterDict):
        raise TypeError(f"{type(model).__name__} has no logit_scale and logit_bias ParameterDicts")
    return scale, bias


def _global_features(local: torch.Tensor, counts: list[int], offset: int, world: int) -> torch.Tensor:
    """All ranks' rows (no gradient) with this rank's rows in place carrying world_size x their gradient."""
    if world == 1:
        return local
    others = D.gather(local, counts)
    extra = local * (world - 1)
    mine = local + (extra - extra.detach())  # value exactly `local`, gradient x world
    return torch.cat([others[:offset], mine, others[offset + local.shape[0] :]])


def _mask(masks: Mapping[str, torch.Tensor], modality: str, feats: torch.Tensor) -> torch.Tensor:
    mask = masks.get(modality)
    if mask is None:
        return torch.ones(feats.shape[0], dtype=torch.bool, device=feats.device)
    return mask.to(device=feats.device, dtype=torch.bool)


def _zero(features: Mapping[str, torch.Tensor], scale: Heads) -> torch.Tensor:
    """A zero loss that still backpropagates (zero gradients) through whatever requires grad."""
    tensors = [*features.values(), *scale.values()]
    terms = [0.0 * t.float().sum() for t in tensors if t.requires_grad]
    if terms:
        return torch.stack(terms).sum()
    return torch.zeros((), device=tensors[0].device if tensors else None)
