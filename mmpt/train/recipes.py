"""Binding recipes: named fine-tune presets that bind a pretrained audio tower to pretrained image/text towers.

A recipe is plain data, the [train] and [finetune] sections of a fine-tune config (what `--config FILE` holds),
applied under any --config file and flags (`mmpt finetune --recipe imagebind ...`). docs/pretrained.md gives
each recipe's commands and the data and steps it is expected to need.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from mmpt.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """A named fine-tune preset: its config sections and a one-line summary."""

    name: str
    summary: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "imagebind",
            "ImageBind-style: image and text towers frozen (a pretrained open_clip pair); the audio tower and its "
            "projection learn from audio-image and audio-text pairs",
            {
                "finetune": {"freeze": ["image", "text"]},
                "train": {"lr": 1e-4, "weight_decay": 0.05, "warmup_steps": 100, "epochs": 10},
            },
        ),
        Recipe(
            "languagebind",
            "LanguageBind-style: the text tower frozen as the anchor; every other tower learns from its pairs "
            "with text only",
            {
                "finetune": {"freeze": ["text"], "pairs_with": "text"},
                "train": {"lr": 1e-4, "weight_decay": 0.05, "warmup_steps": 100, "epochs": 10},
            },
        ),
        Recipe(
            "trimodal",
            "Full tri-modal fine-tune: every tower trains on every pair present, the pretrained image and text "
            "towers at a tenth of the rate of the audio tower and the logit scales",
            {
                "finetune": {"freeze": ["none"], "tower_lr": {"image": 0.1, "text": 0.1}},
                "train": {"lr": 5e-5, "weight_decay": 0.1, "warmup_steps": 200, "epochs": 10},
            },
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; ConfigError listing the known ones otherwise."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}: expected one of {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_sections(name: str) -> dict[str, dict[str, Any]]:
    """A fresh copy of a recipe's config sections (train, finetune), ready to merge under a config file."""
    return copy.deepcopy(get_recipe(name).sections)
