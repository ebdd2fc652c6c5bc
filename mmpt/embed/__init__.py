"""mmpt.embed: embedding columns in the dataset, nearest-neighbour search, 2-D projections and exports.

Names are imported on first use so that `import mmpt.embed` stays cheap (no sklearn, umap or torch).
`search` and `export` are modules here; their functions are `mmpt.embed.search.search` and
`mmpt.embed.export.export`.
"""

from __future__ import annotations

from mmpt.lazy import lazy_exports

_API: dict[str, str] = {
    "write_embeddings": "mmpt.embed.columns",
    "read_embeddings": "mmpt.embed.columns",
    "embedded_ids": "mmpt.embed.columns",
    "non_blob_columns": "mmpt.embed.columns",
    "EmbeddingWriter": "mmpt.embed.export",
    "Hit": "mmpt.embed.search",
    "ensure_index": "mmpt.embed.search",
    "project": "mmpt.embed.projections",
    "cached_projection": "mmpt.embed.projections",
    "clusters": "mmpt.embed.projections",
    "ProjectionJob": "mmpt.embed.projections",
    "start_projection": "mmpt.embed.projections",
}

__all__, __getattr__ = lazy_exports(__name__, _API)
