"""mmpt: contrastive text-image-audio pretraining from a Lance dataset store.

The public Python API is imported lazily so that `import mmpt` stays cheap (no torch until needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    "ingest": "mmpt.store.ingest:ingest",
    "open_dataset": "mmpt.store.dataset:open_dataset",
    "load_model": "mmpt.embed.api:load_model",
    "embeddings": "mmpt.embed.api:embeddings",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'mmpt' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
