"""Read a weights file without ever running pickled code: safetensors, or torch.load(weights_only=True).

Every loader of outside weights (open_clip checkpoints, fine-tuning sources) goes through `load_tensors`,
so a checkpoint that needs arbitrary unpickling is refused with one clear line instead of executed.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from mmpt.checksums import MANIFEST, verify_files
from mmpt.errors import ConfigError

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPER_KEYS = ("state_dict", "model", "module")  # training checkpoints nest the weights under one of these


def load_tensors(path: str | Path, *, strip_prefix: str = "module.") -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` or tensor-only torch file as a flat {name: tensor} dict on CPU.

    A training checkpoint holding the weights under "state_dict" (open_clip_train) or "model" is unwrapped;
    a DataParallel/DDP `module.` prefix is stripped. Anything that would need code to unpickle raises
    ConfigError and is never executed. A file with a checksums.json beside it (an mmpt checkpoint's) must match
    it (CorruptCheckpoint otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no weights file at {path}")
    if (path.parent / MANIFEST).is_file():  # a file of an mmpt checkpoint folder: check it first
        verify_files(path.parent, (path.name,))
    if path.suffix in SAFETENSORS_SUFFIXES:
        tensors = _load_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        tensors = _load_torch(path)
    else:
        raise ConfigError(
            f"cannot load {path}: expected a {', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)} file"
        )
    if strip_prefix and tensors and all(k.startswith(strip_prefix) for k in tensors):
        tensors = {k[len(strip_prefix) :]: v for k, v in tensors.items()}
    return tensors


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path} as safetensors: {e}") from None


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says enough
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the weights_only unpickler met a global it will not import
        reason = next(
            (line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line),
            str(e).splitlines()[0] if str(e) else "unsupported content",
        )
        raise ConfigError(
            f"refusing to load {path}: it contains pickled code ({reason}); only safetensors or tensor-only "
            "checkpoints are loaded"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"cannot read {path} as a torch checkpoint: {first}") from None
    return _tensor_dict(obj, path)


def _tensor_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The flat name -> tensor mapping inside a loaded object (unwrapping a training checkpoint)."""
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                return dict(inner)
        if obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
            return dict(obj)
    raise ConfigError(
        f"{path} holds no state dict of tensors (a dict of name -> tensor, possibly under "
        f"{' or '.join(repr(k) for k in WRAPPER_KEYS)})"
    )


def load_into(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str | Path,
    *,
    may_miss: tuple[str, ...] = (),
) -> set[str]:
    """Copy `state` into `model` in place; returns the names loaded.

    Every tensor must exist in the model with the same shape, and every model tensor must be given unless
    its name starts with one of `may_miss` (a tower or head added on top of the source); otherwise
    ConfigError names the offending tensors.
    """
    expected = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise ConfigError(f"weights in {source} do not fit the model config: shapes differ for {_few(wrong)}")
    unexpected = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state and not k.startswith(may_miss)]
    if unexpected or missing:
        detail = "; ".join(
            s
            for s in (
                f"missing {_few(missing)}" if missing else "",
                f"unexpected {_few(unexpected)}" if unexpected else "",
            )
            if s
        )
        raise ConfigError(f"weights in {source} do not fit the model config: {detail}")
    with torch.no_grad():
        for k, v in state.items():
            expected[k].copy_(v)
    return set(state)


def _few(names: list[str], n: int = 5) -> str:
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more
