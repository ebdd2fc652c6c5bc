"""mmpt: contrastive text-image-audio pretraining from a Lance dataset store.

The public Python API is imported lazily so that `import mmpt` stays cheap (no torch until needed).
"""

from __future__ import annotations

from mmpt.lazy import lazy_exports

__version__ = "0.1.0"

_API: dict[str, str] = {
    "ingest": "mmpt.store.ingest:ingest",
    "open_dataset": "mmpt.store.dataset:open_dataset",
    "demo_frame": "mmpt.store.synthetic:demo_frame",
    "load_model": "mmpt.embed.encoder:load_model",
    "embeddings": "mmpt.embed.api:embeddings",
    "pretrain": "mmpt.api:pretrain",
    "finetune": "mmpt.api:finetune",
    "resume": "mmpt.api:resume",
    "evaluate": "mmpt.api:evaluate",
    "embed": "mmpt.api:embed",
    "search": "mmpt.api:search",
    "project": "mmpt.api:project",
    "list_runs": "mmpt.runs:list_runs",
    "attach": "mmpt.jobs:attach",
    "Explorer": "mmpt.explore:Explorer",
}

__all__, __getattr__ = lazy_exports(__name__, _API)
__all__ += ["__version__"]
