"""WiSE-FT (Wortsman et al. 2022): interpolate pretrained and fine-tuned weights to keep zero-shot ability.

theta(alpha) = (1 - alpha) * theta_pretrained + alpha * theta_finetuned; alpha 0 is the starting point,
1 the fine-tuned model. A fine-tune run keeps its starting weights in RUN/init/, so `wise_checkpoint`
can write RUN/wise-<alpha>/ (a checkpoint folder any mmpt command loads) at any time after training.
Parameters that started from a random init (an added tower, a new projection) have nothing to go back to
and keep their fine-tuned values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from mmpt.errors import ConfigError


def interpolate(
    pretrained: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * pretrained + alpha * finetuned for every floating-point tensor of `finetuned`.

    Tensors with no pretrained value (a tower added during fine-tuning) keep their fine-tuned value, as do
    integer buffers; alpha 0 and 1 return the endpoints exactly.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"WiSE-FT alpha must be between 0 and 1, got {alpha}")
    out = {}
    for name, ft in finetuned.items():
        pre = pretrained.get(name)
        if pre is None or not ft.is_floating_point() or alpha == 1.0:
            out[name] = ft.clone()
        elif pre.shape != ft.shape:
            raise ConfigError(
                f"cannot interpolate {name}: pretrained {tuple(pre.shape)} vs fine-tuned {tuple(ft.shape)}"
            )
        elif alpha == 0.0:
            out[name] = pre.to(ft.dtype).clone()
        else:
            out[name] = torch.lerp(pre.to(ft.dtype), ft, alpha)
    return out


def wise_name(alpha: float) -> str:
    """The folder / report name of one interpolation, e.g. "wise-0.5"."""
    return f"wise-{alpha:g}"


def wise_model(
    pretrained: nn.Module, finetuned: nn.Module, alpha: float, fresh: Iterable[str] = ()
) -> nn.Module:
    """A model built like `finetuned` holding the interpolated weights (neither input is changed);
    `fresh` names parameters that were newly initialised, not pretrained (they keep the fine-tuned value)."""
    from mmpt.models import build_model

    fresh = set(fresh)
    start = {k: v for k, v in pretrained.state_dict().items() if k not in fresh}
    model = build_model(finetuned.config)
    model.load_state_dict(interpolate(start, finetuned.state_dict(), alpha))
    return model


def wise_checkpoint(run: str | Path, alpha: float) -> Path:
    """Write RUN/wise-<alpha>/ (model.safetensors + model.json) from RUN/init and the run's final weights
    (the new parameters listed in RUN/finetune.json keep their fine-tuned values)."""
    from mmpt.eval.run import load_run_model
    from mmpt.models.checkpoint import load_model, save_model

    run = Path(run)
    init = run / "init"
    if not (init / "model.safetensors").is_file():
        raise ConfigError(f"{run} has no starting weights in {init}: WiSE-FT needs a fine-tune run")
    info = run / "finetune.json"
    fresh = json.loads(info.read_text()).get("fresh", []) if info.is_file() else []
    model = wise_model(load_model(init), load_run_model(run), alpha, fresh)
    return save_model(model, run / wise_name(alpha))
