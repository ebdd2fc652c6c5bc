"""Model weights on disk: `model.safetensors` (tensors only, never pickled code) + `model.json` (the config)
+ `checksums.json` (their sha256, mmpt.checksums), checked before anything is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from mmpt.checksums import MANIFEST, MARKER, verify_files, write_manifest
from mmpt.errors import ConfigError
from mmpt.models.config import ModelConfig
from mmpt.models.model import MultimodalModel, build_model

WEIGHTS = "model.safetensors"
CONFIG = "model.json"


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Write the model's weights and config into `directory` (created if needed), then their checksums.json
    once both are on disk; returns the directory."""
    from safetensors.torch import save_model as save_safetensors

    inner = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if not isinstance(inner, MultimodalModel):
        raise TypeError(f"save_model saves a MultimodalModel, got {type(inner).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)  # a half-rewritten folder must not pass as the old one
    save_safetensors(inner, str(directory / WEIGHTS), metadata={"format": "pt", MARKER: MANIFEST})
    (directory / CONFIG).write_text(json.dumps(inner.config.to_dict(), indent=2) + "\n")
    write_manifest(directory, [WEIGHTS, CONFIG])
    return directory


def load_config(directory: str | Path) -> ModelConfig:
    """The ModelConfig saved next to a model's weights."""
    path = Path(directory) / CONFIG
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"no model config at {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"cannot parse {path}: {e}") from None


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> MultimodalModel:
    """Rebuild a model from `model.json` and load `model.safetensors` from the same directory, after checking
    both against the folder's checksums (CorruptCheckpoint names a file that does not match)."""
    if not (Path(directory) / CONFIG).is_file() and not (Path(directory) / MANIFEST).is_file():
        raise ConfigError(f"no model config at {Path(directory) / CONFIG}")
    verify_files(directory, (WEIGHTS, CONFIG))  # a listed file that is gone: CorruptCheckpoint
    model = build_model(load_config(directory))
    load_state(model, Path(directory) / WEIGHTS)
    return model.to(map_location)


def load_state(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model` in place, after checking the file against its folder's checksums;
    any missing, unexpected or mis-shaped tensor raises ConfigError naming the tensors."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model as load_safetensors

    model = getattr(model, "module", model)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no weights file at {path}")
    verify_files(path.parent, (path.name,))
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"cannot read {path} as safetensors: {exc}") from None
    wrong = [
        f"{k} {shapes[k]} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in shapes and shapes[k] != tuple(v.shape)
    ]
    if wrong:
        raise ConfigError(f"weights in {path} do not fit the model: {_few(wrong)}")
    missing, unexpected = load_safetensors(model, str(path), strict=False)
    if missing or unexpected:
        detail = "; ".join(
            s
            for s in (
                f"missing {_few(missing)}" if missing else "",
                f"unexpected {_few(unexpected)}" if unexpected else "",
            )
            if s
        )
        raise ConfigError(f"weights in {path} do not fit the model: {detail}")


def _few(names: list[str], n: int = 5) -> str:
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more
