"""Pairwise contrastive loss over the modality pairs present in a batch: CLIP InfoNCE or SigLIP.

Each pair uses only the rows holding both of its modalities. Under DDP every rank gathers all ranks'
features (with gradient) and masks, scores its own valid rows against every valid row, and scales its
part by world_size / (global valid rows): DDP's gradient averaging then gives exactly the gradient of
the single-process loss over the global batch, even when ranks hold different numbers of valid rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmpt.errors import ConfigError
from mmpt.models.config import MODALITIES, PAIRS, pair_modalities
from mmpt.train import distributed as D

KINDS: tuple[str, ...] = ("clip", "siglip")


def canonical_pair(name: str) -> str:
    """"image-text", "text_image", ... -> the canonical pair name ("image_text")."""
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
    (features, masks, model). Returns (total, {pair: loss}); the per-pair values are detached global
    averages for logging. `total` carries the global loss value on every rank and this rank's share of
    the gradient (see the module docstring). Pairs with fewer than 2 valid rows in the global batch add
    nothing and are left out of the dict.
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
        logit_scale: Mapping[str, torch.Tensor] | nn.Module,
        logit_bias: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if isinstance(logit_scale, nn.Module) and not isinstance(logit_scale, nn.ParameterDict):
            model = getattr(logit_scale, "module", logit_scale)  # unwrap DistributedDataParallel
            logit_scale, logit_bias = model.logit_scale, model.logit_bias
        if self.kind == "siglip" and logit_bias is None:
            raise ConfigError("the siglip loss needs the model's logit_bias")

        pairs = [p for p in self.pairs if all(m in features for m in pair_modalities(p))]
        used = [m for m in MODALITIES if any(m in pair_modalities(p) for p in pairs)]
        # Keep every logit scale/bias of the trained pairs in the graph (zero-weighted), so each step
        # touches the same parameters on every rank whichever pairs happen to be empty.
        anchor = sum(0.0 * t for p in self.pairs for t in _pair_params(p, logit_scale, logit_bias))
        if not used:
            zero = torch.zeros((), device=_device(features, logit_scale))
            return zero + anchor, {}

        rank, world = D.get_rank(), D.get_world_size()
        n_local = features[used[0]].shape[0]
        counts = D.gather_counts(n_local, features[used[0]].device)
        offset = sum(counts[:rank])
        local_masks = torch.stack([_mask(masks, m, features[m]) for m in used], dim=1)
        all_masks = dict(zip(used, D.gather(local_masks, counts).unbind(1), strict=True))
        gathered: dict[str, torch.Tensor] = {}

        parts: dict[str, torch.Tensor] = {}  # this rank's share of each pair's global loss
        for pair in pairs:
            a, b = pair_modalities(pair)
            valid = all_masks[a] & all_masks[b]
            n_valid = int(valid.sum())
            if n_valid < 2:
                continue
            for m in (a, b):
                if m not in gathered:
                    gathered[m] = D.gather_with_grad(features[m].float(), counts)
            keys = valid.nonzero().squeeze(1)
            local_valid = valid[offset : offset + n_local]
            queries = local_valid.nonzero().squeeze(1)
            labels = (valid.cumsum(0) - 1)[offset + queries]  # each query's column among the keys
            fa, fb = features[a].float()[queries], features[b].float()[queries]
            ka, kb = gathered[a][keys], gathered[b][keys]
            scale = logit_scale[pair].clamp(max=self.max_logit_scale).exp()
            if self.kind == "clip":
                loss_sum = F.cross_entropy(scale * fa @ kb.T, labels, reduction="sum") + F.cross_entropy(
                    scale * fb @ ka.T, labels, reduction="sum"
                )
                parts[pair] = loss_sum / (2 * n_valid)
            else:
                logits = scale * fa @ kb.T + logit_bias[pair]
                signs = -torch.ones_like(logits)
                signs[torch.arange(len(queries), device=logits.device), labels] = 1.0
                parts[pair] = -F.logsigmoid(signs * logits).sum() / n_valid

        if not parts:
            zero = torch.zeros((), device=_device(features, logit_scale))
            return zero + anchor, {}
        names = list(parts)
        global_losses = D.all_reduce_sum(torch.stack([parts[p].detach() for p in names]))
        per_pair = dict(zip(names, global_losses.unbind(0), strict=True))
        local_total = world * sum(self.weights[p] * parts[p] for p in names)
        global_total = sum(self.weights[p] * per_pair[p] for p in names)
        total = local_total + (global_total - local_total.detach()) + anchor
        return total, per_pair


def _mask(masks: Mapping[str, torch.Tensor], modality: str, feats: torch.Tensor) -> torch.Tensor:
    mask = masks.get(modality)
    if mask is None:
        return torch.ones(feats.shape[0], dtype=torch.bool, device=feats.device)
    return mask.to(device=feats.device, dtype=torch.bool)


def _pair_params(pair: str, scale: Mapping, bias: Mapping | None) -> list[torch.Tensor]:
    found = [d[pair] for d in (scale, bias) if d is not None and pair in d]
    return found


def _device(features: Mapping[str, torch.Tensor], scale: Mapping) -> torch.device:
    for t in features.values():
        return t.device
    for t in scale.values():
        return t.device
    return torch.device("cpu")
