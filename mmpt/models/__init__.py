"""mmpt.models: towers, the multimodal model, presets and checkpoint I/O.

Names are imported lazily so that importing `mmpt.models.spec` (e.g. in data workers) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_API: dict[str, str] = {
    "AudioConfig": "mmpt.models.config",
    "ModelConfig": "mmpt.models.config",
    "PAIRS": "mmpt.models.config",
    "InputSpec": "mmpt.models.spec",
    "build_tokenizer": "mmpt.models.tokenizer",
    "PRESETS": "mmpt.models.presets",
    "preset_config": "mmpt.models.presets",
    "resolve_model_config": "mmpt.models.presets",
    "MultimodalModel": "mmpt.models.model",
    "build_model": "mmpt.models.model",
    "save_model": "mmpt.models.checkpoint",
    "load_model": "mmpt.models.checkpoint",
    "load_state": "mmpt.models.checkpoint",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mmpt.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
