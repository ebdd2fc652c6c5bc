"""`torchrun --nproc_per_node=N -m mmpt -- embed ...`: each rank embeds its share of the rows, rank 0 commits.

Every rank pins the same dataset version, plans the same pending rows (`mmpt.embed.api._plan`: rows the run
has neither committed nor staged) and embeds a contiguous slice of each group of them on its own device,
staging its vectors durably in the one staging dataset that `mmpt embed` uses (concurrent appends). After a
barrier, rank 0 writes each column in one commit (`EmbeddingWriter.commit`), so resuming, fingerprints and
the `emb-<name>` tag are those of the single-process path; a crash leaves the staged chunks for the rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from mmpt.embed.compute import SplitEmbeddings, iter_embeddings
from mmpt.embed.encoder import load_model, model_modalities, run_name
from mmpt.embed.export import EmbeddingWriter
from mmpt.errors import ConfigError
from mmpt.torchrun import setup_distributed


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(rows: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous slice of `rows` (sizes differ by at most one row)."""
    return np.array_split(rows, world_size)[rank]


def distributed_embed(
    run: str | Path,
    data: Any,
    modalities: Sequence[str] | None = None,
    split: str | None = None,
    *,
    batch_size: int = 256,
    device: str = "auto",
    num_workers: int = 0,
    chunk_rows: int = 2048,
    name: str | None = None,
    progress: bool = True,
    storage_options: dict[str, str] | None = None,
) -> dict[str, int] | None:
    """`mmpt.embed.api.embed_run` across the torchrun ranks (gloo on CPU, NCCL on GPU). Rank 0 returns the
    rows written per modality; the other ranks return None."""
    from mmpt.embed.api import _plan, _wanted
    from mmpt.store.dataset import MmptDataset, open_dataset

    if chunk_rows < 1 or batch_size < 1:
        raise ConfigError("batch size and chunk rows must be at least 1")
    info = setup_distributed(device)
    try:
        name = run_name(run, name)
        first = (
            data
            if isinstance(data, MmptDataset)
            else open_dataset(str(data), storage_options=storage_options)
        )
        version = [first.version]
        if info.world_size > 1:
            dist.broadcast_object_list(version, src=0)  # every rank plans against rank 0's version
        ds = first.checkout(version[0])
        wanted = _wanted(model_modalities(run), ds.modalities(), modalities, f"run {name}'s model")
        encoder = load_model(run, str(info.device))
        writers = {
            m: EmbeddingWriter(ds.uri, name, m, encoder.dim, storage_options=ds.storage_options)
            for m in wanted
        }
        if info.rank == 0:
            for writer in writers.values():
                writer.prepare()
        barrier()
        done = {m: writer.done_ids() for m, writer in writers.items()}
        barrier()  # every rank has read what was done before any rank stages more
        _, groups = _plan(ds.lance, split, done)
        mine = [(group, shard(rows, info.rank, info.world_size)) for group, rows in groups]
        _embed_rows(
            encoder, ds, mine, writers, batch_size, num_workers, chunk_rows, progress and info.rank == 0
        )
        barrier()
        if info.rank != 0:
            return None
        written = {}
        for m, writer in writers.items():
            written[m] = writer.pending()
            writer.commit()
        return written
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _embed_rows(
    encoder: Any,
    ds: Any,
    groups: list[tuple[tuple[str, ...], np.ndarray]],
    writers: dict[str, EmbeddingWriter],
    batch_size: int,
    num_workers: int,
    chunk_rows: int,
    progress: bool,
) -> None:
    """Embed each group's rows for its modalities, staging every `chunk_rows` rows (as `embed_run` does)."""
    from tqdm.auto import tqdm

    buffers: dict[str, list[SplitEmbeddings]] = {m: [] for m in writers}
    held = 0

    def flush() -> None:
        for m, parts in buffers.items():
            if parts:
                writers[m].add([i for p in parts for i in p.ids], np.concatenate([p.vectors for p in parts]))
            buffers[m] = []

    total = sum(len(rows) for _, rows in groups)
    bar = tqdm(total=total, disable=not progress, unit="row", desc="embed (rank 0)", dynamic_ncols=True)
    try:
        for group, rows in groups:
            if not len(rows):
                continue
            batches = iter_embeddings(
                encoder.model,
                ds,
                list(group),
                rows=rows,
                batch_size=batch_size,
                device=encoder.device,
                num_workers=num_workers,
                progress=bar,
            )
            with closing(batches):
                for ids, parts in batches:
                    for m, part in parts.items():
                        if len(part.ids):
                            buffers[m].append(part)
                    held += len(ids)
                    if held >= chunk_rows:
                        flush()
                        held = 0
        flush()
    finally:
        bar.close()
