"""mmpt.models: towers, the multimodal model, presets and checkpoint I/O.

Names are imported lazily so that importing `mmpt.models.spec` (e.g. in data workers) stays cheap.
"""

from __future__ import annotations

from mmpt.lazy import lazy_exports

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

__all__, __getattr__ = lazy_exports(__name__, _API)
