"""Freeze policies and per-parameter learning-rate multipliers for fine-tuning.

A tower's parameters fall into depths: 0 the stem (patch/token embeddings, position embeddings, pre-norm),
1..n its n blocks, n+1 the head (final norm and output projection). Freezing sets `requires_grad=False`
(the optimiser builder leaves such parameters out, and a fully frozen tower runs without autograd);
`lr_scale_fn` gives the training loop's `lr_scale`: a per-tower multiplier times layer-wise decay.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from mmpt.errors import ConfigError

if TYPE_CHECKING:
    from mmpt.models.model import MultimodalModel

TOWERS: tuple[str, ...] = ("image", "text", "audio")
FREEZABLE: tuple[str, ...] = (*TOWERS, "heads")
PREFIXES: dict[str, str] = {"image": "clip.visual.", "text": "clip.text.", "audio": "audio."}
BLOCK_LISTS = ("resblocks", "blocks", "layer", "layers")  # open_clip, timm, Hugging Face encoders
STEM = re.compile(r"embed|cls_token|reg_token|class_embedding|conv1\.|^conv1|ln_pre|(^|\.)stem")


@dataclass(frozen=True)
class ParamPlace:
    """Where a parameter sits: its tower ("heads" for logit scales/biases), depth and the tower's block count."""

    tower: str
    depth: int
    n_blocks: int

    @property
    def is_head(self) -> bool:
        return self.tower != "heads" and self.depth == self.n_blocks + 1


def tower_of(name: str) -> str:
    """The tower a parameter name belongs to: image, text, audio or heads."""
    for tower, prefix in PREFIXES.items():
        if name.startswith(prefix):
            return tower
    if name.startswith(("logit_scale.", "logit_bias.")):
        return "heads"
    raise ConfigError(f"parameter {name!r} belongs to no tower")


def _block_prefix(tower: nn.Module) -> tuple[str, int]:
    """(dotted path of the tower's main ModuleList of blocks, its length); ("", 0) if there is none."""
    best = ("", 0)
    for path, module in tower.named_modules():
        if (
            isinstance(module, (nn.ModuleList, nn.Sequential))
            and path.rsplit(".", 1)[-1] in BLOCK_LISTS
            and len(module) > best[1]
        ):
            best = (path, len(module))
    return best


def param_places(model: MultimodalModel) -> dict[str, ParamPlace]:
    """The place (tower, depth, blocks) of every named parameter of a MultimodalModel."""
    places: dict[str, ParamPlace] = {}
    modules = {t: model.tower(t) for t in TOWERS}
    blocks = {t: _block_prefix(module) for t, module in modules.items() if module is not None}
    for name, _ in model.named_parameters():
        tower = tower_of(name)
        if tower == "heads":
            places[name] = ParamPlace("heads", 0, 0)
            continue
        path, n = blocks[tower]
        rel = name[len(PREFIXES[tower]) :]
        if path and rel.startswith(path + "."):
            depth = int(rel[len(path) + 1 :].split(".", 1)[0]) + 1
        elif STEM.search(rel):
            depth = 0
        else:
            depth = n + 1
        places[name] = ParamPlace(tower, depth, n)
    return places


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)) or type(
        module
    ).__name__.endswith(("Norm", "Norm2d"))


def norm_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters of every normalisation layer."""
    names: set[str] = set()
    for mod_name, module in model.named_modules():
        if _is_norm(module):
            names.update(
                f"{mod_name}.{p}" if mod_name else p for p, _ in module.named_parameters(recurse=False)
            )
    return names


def apply_freeze(
    model: MultimodalModel,
    towers: Iterable[str] = (),
    first_n_blocks: Mapping[str, int] | None = None,
    norms_and_projections_only: bool = False,
    *,
    keep_trainable: Iterable[str] = (),
) -> list[str]:
    """Freeze whole towers, the stem and first N blocks of some towers, or everything but norms,
    output projections and logit scales; returns the names of the frozen parameters.

    `keep_trainable` names parameters never frozen (e.g. a new projection on a pretrained tower).
    Freezing every parameter raises ConfigError.
    """
    towers = list(towers)
    first_n_blocks = dict(first_n_blocks or {})
    unknown = [t for t in [*towers, *first_n_blocks] if t not in FREEZABLE]
    if unknown:
        raise ConfigError(f"cannot freeze {unknown}: expected some of {', '.join(FREEZABLE)}")
    present = {t for t in TOWERS if model.tower(t) is not None} | {"heads"}
    absent = [t for t in [*towers, *first_n_blocks] if t not in present]
    if absent:
        raise ConfigError(
            f"cannot freeze {absent}: the model has no such tower (it has {', '.join(model.modalities)})"
        )
    places = param_places(model)
    for tower, n in first_n_blocks.items():
        blocks = next((p.n_blocks for p in places.values() if p.tower == tower), 0)
        if not 0 <= n <= blocks:
            raise ConfigError(f"freeze_blocks.{tower} must be between 0 and {blocks} (its blocks), got {n}")
    norms = norm_parameter_names(model) if norms_and_projections_only else set()
    keep = set(keep_trainable)
    frozen = []
    for name, p in model.named_parameters():
        place = places[name]
        freeze = place.tower in towers or (
            place.tower in first_n_blocks and place.depth <= first_n_blocks[place.tower]
        )
        if norms_and_projections_only and place.tower != "heads" and name not in norms and not place.is_head:
            freeze = True
        if freeze and name not in keep:
            p.requires_grad_(False)
            frozen.append(name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("this freeze policy leaves nothing to train")
    return frozen


def lr_scale_fn(
    model: MultimodalModel,
    tower_lr: Mapping[str, float] | None = None,
    layer_decay: float = 1.0,
) -> Callable[[str], float]:
    """The training loop's `lr_scale`: tower_lr[tower] x layer_decay ** (n_blocks + 1 - depth).

    With layer_decay < 1 a tower's head keeps the full rate and each block below it gets `layer_decay`
    times the rate of the one above (BEiT / ELECTRA layer-wise decay); "heads" are the logit scales.
    """
    tower_lr = dict(tower_lr or {})
    unknown = [t for t in tower_lr if t not in FREEZABLE]
    if unknown:
        raise ConfigError(f"tower_lr has unknown towers {unknown}: expected some of {', '.join(FREEZABLE)}")
    if not 0 < layer_decay <= 1:
        raise ConfigError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if any(v < 0 for v in tower_lr.values()):
        raise ConfigError(f"tower_lr multipliers must be >= 0, got {tower_lr}")
    table = {}
    for name, place in param_places(model).items():
        scale = float(tower_lr.get(place.tower, 1.0))
        if place.tower != "heads":
            scale *= layer_decay ** (place.n_blocks + 1 - place.depth)
        table[name] = scale
    return lambda name: table.get(name, 1.0)
