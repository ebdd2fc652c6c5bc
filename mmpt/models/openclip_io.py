"""open_clip interop: load an open_clip checkpoint into the image and text towers, export them back.

mmpt keeps open_clip's module names under `clip.` (`clip.visual.*`, `clip.text.*`), so the mapping is a
prefix: open_clip's flat CLIP layout (text tower at top level) goes through open_clip's own
`convert_to_custom_text_state_dict` first, and the one `logit_scale` becomes `logit_scale.image_text`.
An export is a weights file plus a model-config JSON that `open_clip.add_model_config` registers, so that
`open_clip.create_model(name, pretrained=weights)` rebuilds the same image and text embeddings.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from mmpt.errors import ConfigError
from mmpt.models.config import ModelConfig
from mmpt.models.model import MultimodalModel, build_model
from mmpt.models.safe_load import load_into, load_tensors

PAIR = "image_text"
FLAT_TEXT_KEYS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")


def openclip_to_mmpt(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an open_clip state dict (flat CLIP or custom-text layout, no `module.`) to mmpt's names."""
    from open_clip.model import convert_to_custom_text_state_dict

    state = convert_to_custom_text_state_dict(dict(state))
    out = {}
    for k, v in state.items():
        if k.startswith(("visual.", "text.")):
            out[f"clip.{k}"] = v
        elif k in ("logit_scale", "logit_bias"):
            out[f"{k}.{PAIR}"] = v.reshape(())
        else:
            out[k] = v  # left for load_into to name as unexpected (e.g. a CoCa decoder)
    return out


def mmpt_to_openclip(
    model: MultimodalModel, *, logit_bias: bool = False
) -> tuple[dict[str, torch.Tensor], bool]:
    """(open_clip state dict of the image-text part, whether it needs open_clip's custom-text layout)."""
    if not {"image", "text"} <= set(model.modalities):
        raise ConfigError(
            f"only a model with image and text towers exports to open_clip; this one has "
            f"{', '.join(model.modalities)}"
        )
    if model.config.image_tower != "open_clip":
        raise ConfigError(
            f"the {model.config.image_tower!r} image tower of model {model.config.name!r} has no "
            "open_clip equivalent; only models with open_clip image towers export to open_clip"
        )
    state = model.state_dict()
    text = {k[len("clip.text.") :]: v for k, v in state.items() if k.startswith("clip.text.")}
    custom = model.config.text_tower != "open_clip" or any(not k.startswith(FLAT_TEXT_KEYS) for k in text)
    out = {k[len("clip.") :]: v for k, v in state.items() if k.startswith("clip.visual.")}
    out.update({f"text.{k}" if custom else k: v for k, v in text.items()})
    out["logit_scale"] = state[f"logit_scale.{PAIR}"]
    if logit_bias:
        out["logit_bias"] = state[f"logit_bias.{PAIR}"]
    return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}, custom


def openclip_model_config(model: MultimodalModel, *, custom: bool, logit_bias: bool = False) -> dict:
    """The open_clip model-config dict (embed_dim, vision_cfg, text_cfg, ...) of the image-text part."""
    cfg = model.config
    out = copy.deepcopy({k: cfg.clip[k] for k in CONFIG_KEYS if k in cfg.clip})
    if cfg.text_tower.startswith("hf:"):
        folder = cfg.text_tower[len("hf:") :]
        out["text_cfg"] = {**out["text_cfg"], "hf_model_name": folder, "hf_tokenizer_name": folder}
    if custom:
        out["custom_text"] = True
    if logit_bias:
        out["init_logit_bias"] = float(model.logit_bias[PAIR].detach())
    return out


def export_openclip(
    model: MultimodalModel, path: str | Path, config_name: str | None = None, *, logit_bias: bool = False
) -> tuple[Path, Path]:
    """Write the image-text part as an open_clip checkpoint (`.safetensors`, or `.pt`/`.bin` of tensors
    only) and its model-config JSON `<config_name or stem>.json` beside it; returns (weights, config).

    `open_clip.add_model_config(config); open_clip.create_model(config.stem, pretrained=weights)` then
    gives the same encode_image / encode_text. `logit_bias` also exports the SigLIP bias.
    """
    path = Path(path)
    state, custom = mmpt_to_openclip(model, logit_bias=logit_bias)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt"})
    elif path.suffix in (".pt", ".pth", ".bin"):
        torch.save(state, path)
    else:
        raise ConfigError(f"cannot export to {path}: use a .safetensors, .pt, .pth or .bin file name")
    config_path = path.with_name(f"{config_name or path.stem}.json")
    cfg = openclip_model_config(model, custom=custom, logit_bias=logit_bias)
    config_path.write_text(json.dumps(cfg, indent=2) + "\n")
    return path, config_path


def find_openclip_config(path: str | Path) -> Path | None:
    """An open_clip model-config JSON next to a checkpoint: `<stem>.json` or `open_clip_config.json`."""
    path = Path(path)
    for candidate in (path.with_suffix(".json"), path.parent / "open_clip_config.json"):
        if candidate.is_file():
            return candidate
    return None


def load_openclip_checkpoint(
    path: str | Path,
    config: ModelConfig | str | None = None,
    *,
    modalities: list[str] | tuple[str, ...] | None = None,
) -> tuple[MultimodalModel, set[str]]:
    """A model whose image and text towers (and image-text logit scale) come from an open_clip checkpoint.

    `config` is a ModelConfig, a preset / open_clip model name / config JSON path, or None to use the JSON
    next to the checkpoint. `modalities` defaults to image and text; an "audio" in it is freshly initialised.
    Returns (model, names of the tensors loaded). Weights are read with `safe_load` (never unpickled code).
    """
    from mmpt.models.presets import resolve_model_config

    path = Path(path)
    if config is None:
        found = find_openclip_config(path)
        if found is None:
            raise ConfigError(
                f"no model config for {path}: pass one (--model NAME|JSON) or put "
                f"{path.with_suffix('.json').name} or open_clip_config.json beside it"
            )
        config = str(found)
    cfg = resolve_model_config(config) if isinstance(config, str) else config
    d = cfg.to_dict()
    d["modalities"] = list(modalities) if modalities else ["image", "text"]
    if not {"image", "text"} <= set(d["modalities"]):
        raise ConfigError(
            "an open_clip checkpoint fills the image and text towers: keep both in the modalities"
        )
    cfg = ModelConfig.from_dict(d)
    model = build_model(cfg)
    state = openclip_to_mmpt(load_tensors(path))
    state.pop("clip.text.transformer.embeddings.position_ids", None)  # older transformers kept it
    fresh = ("audio.",) + tuple(
        f"{kind}.{p}" for kind in ("logit_scale", "logit_bias") for p in cfg.pairs if p != PAIR
    )
    fresh += (f"logit_bias.{PAIR}",)  # CLIP-loss checkpoints have no bias
    loaded = load_into(model, state, path, may_miss=fresh)
    return model, loaded
