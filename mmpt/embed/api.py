"""A run's embeddings in a dataset: write its embedding columns resumably, read them, search them with a query.

`embed_run` writes `emb_<name>_<modality>` columns into the dataset; `embeddings` reads them back;
`search_run` / `search_text` embed a query (with `mmpt.embed.encoder`) and return the nearest rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from mmpt.embed.columns import as_lance, read_embeddings, sql_literal
from mmpt.embed.encoder import (
    AudioInput,
    Encoder,
    ImageInput,
    as_run_name,
    load_model,
    model_modalities,
    require_modality,
    run_name,
)
from mmpt.errors import ConfigError, DataError
from mmpt.store.integrity import reads_dataset
from mmpt.store.schema import ID, embedding_column

if TYPE_CHECKING:
    import lance

    from mmpt.embed.search import SearchResult
    from mmpt.store.dataset import MmptDataset

log = logging.getLogger(__name__)


@reads_dataset("dataset")
def embeddings(
    dataset: Any, run: str | Path, modality: str, format: str = "numpy", split: str | None = None
) -> tuple[Any, Any]:
    """(ids, vectors) a run wrote for one modality: numpy [N, D], torch, or Arrow (see `read_embeddings`).

    `run` is a run folder (its derived name is used) or a run name.
    """
    return read_embeddings(dataset, as_run_name(run), modality, format=format, split=split)


# -- embedding a dataset -----------------------------------------------------------------------------


def _open(data: Any) -> MmptDataset:
    """An MmptDataset from a path/URI, an MmptDataset or a LanceDataset."""
    from mmpt.store.dataset import MmptDataset, open_dataset

    if isinstance(data, MmptDataset):
        return data
    return open_dataset(data if isinstance(data, str | Path) else as_lance(data).uri)


def _latest(data: Any) -> MmptDataset:
    """The newest version of a dataset given as a path, an MmptDataset or a LanceDataset, opened with the
    storage_options it came with (columns written since `data` was opened are visible)."""
    from mmpt.store.dataset import open_dataset

    ds = _open(data)
    return open_dataset(ds.uri, storage_options=ds.storage_options)


def _wanted(
    model_has: Sequence[str], data_has: set[str], modalities: Sequence[str] | None, who: str
) -> list[str]:
    """The modalities to embed: those asked for (each checked), or all the model and the dataset both have."""
    if modalities:
        for m in modalities:
            require_modality(m, model_has, who)
            if m not in data_has:
                raise DataError(f"the dataset has no {m} values; it holds {', '.join(sorted(data_has))}")
        return list(dict.fromkeys(modalities))
    wanted = [m for m in model_has if m in data_has]
    if not wanted:
        raise DataError(
            f"{who} embeds {', '.join(model_has)} but the dataset holds {', '.join(sorted(data_has))}"
        )
    return wanted


def _plan(
    lds: lance.LanceDataset, split: str | None, done: dict[str, set[str]]
) -> tuple[dict[str, int], list[tuple[tuple[str, ...], np.ndarray]]]:
    """Rows of `split` still to embed: the count per modality, and the row positions grouped by the
    modalities not yet done for them, so that each row is decoded once for all of its pending modalities
    (a row lacking a modality costs nothing there: the loader marks it missing without decoding)."""
    from mmpt.data.sampler import split_positions

    positions = split_positions(lds, split)
    ids = lds.to_table(columns=[ID])[ID]
    counts, keys = {}, np.zeros(len(positions), np.int64)
    needed = np.zeros(len(positions), bool)
    for bit, (m, done_ids) in enumerate(done.items()):
        present = pc.is_in(ids, value_set=lds.to_table(columns=[ID], filter=f"`{m}` IS NOT NULL")[ID])
        finished = pc.is_in(ids, value_set=pa.array(list(done_ids), pa.string()))
        todo_all = ~finished.to_numpy(zero_copy_only=False)
        pending = (present.to_numpy(zero_copy_only=False) & todo_all)[positions]
        counts[m] = int(pending.sum())
        needed |= pending
        keys |= todo_all[positions].astype(np.int64) << bit
    names = list(done)
    groups = []
    for key in np.unique(keys[needed]):
        rows = positions[needed & (keys == key)]
        groups.append((tuple(m for bit, m in enumerate(names) if key >> bit & 1), rows))
    return counts, sorted(groups, key=lambda g: int(g[1][0]))


@reads_dataset("data")
def embed_run(
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
    encoder: Encoder | None = None,
) -> dict[str, int]:
    """Write a run's embeddings into `emb_<name>_<modality>` columns of the dataset; returns rows written per modality.

    Resumable: rows the run already embedded (committed, or staged before a crash) are skipped; every
    `chunk_rows` rows are staged durably, and each column is written in one commit tagged `emb-<name>`.
    """
    from mmpt.embed.compute import iter_embeddings
    from mmpt.embed.export import EmbeddingWriter

    if chunk_rows < 1 or batch_size < 1:
        raise ConfigError("batch size and chunk rows must be at least 1")
    name = run_name(run, name)
    has = encoder.modalities if encoder is not None else model_modalities(run)
    ds = _open(data)
    wanted = _wanted(has, ds.modalities(), modalities, f"run {name}'s model")
    if encoder is None:
        encoder = load_model(run, device)
    writers = {
        m: EmbeddingWriter(ds.uri, name, m, encoder.dim, storage_options=ds.storage_options) for m in wanted
    }
    done = {m: writer.done_ids() for m, writer in writers.items()}
    counts, groups = _plan(ds.lance, split, done)
    for m, writer in writers.items():
        log.info("%s: %d rows to embed, %d already done", writer.column, counts[m], len(done[m]))
    buffers: dict[str, list] = {m: [] for m in wanted}
    embedded = dict.fromkeys(wanted, 0)
    held = 0  # rows embedded since the last flush

    def flush() -> None:  # stage every modality at the same row boundary, so a resume stays one group
        for m, parts in buffers.items():
            if parts:
                ids = [i for p in parts for i in p.ids]
                writers[m].add(ids, np.concatenate([p.vectors for p in parts]))
                embedded[m] += len(ids)
            buffers[m] = []

    total = sum(len(rows) for _, rows in groups)
    bar = tqdm(total=total, disable=not progress, unit="row", desc=f"embed {name}", dynamic_ncols=True)
    try:
        for group, rows in groups:
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
            with closing(batches):  # stops the loader's workers even when staging fails
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
    written = {}
    for m, writer in writers.items():
        written[m] = writer.pending()
        writer.commit()
        if embedded[m] < counts[m]:  # the loader marks undecodable blobs missing
            log.warning(
                "%s: %d rows could not be decoded and were left out", writer.column, counts[m] - embedded[m]
            )
    return written


@reads_dataset("data")
def embedded_rows(data: Any, run: str | Path, modality: str) -> int:
    """How many rows hold a run's embedding of `modality` (0 without the column); `run` is a folder or a name."""
    column = embedding_column(as_run_name(run), modality)
    lds = _open(data).lance
    return lds.count_rows(filter=f"`{column}` IS NOT NULL") if column in lds.schema.names else 0


# -- search ------------------------------------------------------------------------------------------


def ensure_embedded(
    run: str | Path,
    data: Any,
    modality: str,
    *,
    name: str | None = None,
    encoder: Encoder | None = None,
    device: str = "auto",
    progress: bool = True,
) -> str:
    """The run's column for `modality`, embedding the dataset first (with progress) if the run has not yet."""
    name = run_name(run, name)
    require_modality(
        modality, encoder.modalities if encoder else model_modalities(run), f"run {name}'s model"
    )
    ds = _latest(data)  # an MmptDataset keeps its storage_options (s3:// without the AWS_* environment)
    column = embedding_column(name, modality)
    if column not in ds.lance.schema.names:
        embed_run(run, ds, [modality], name=name, progress=progress, encoder=encoder, device=device)
    return column


def _row_vector(dataset: Any, column: str, row_id: str) -> np.ndarray:
    """The stored vector of one row in `column` (DataError if the row is unknown or has none)."""
    table = as_lance(dataset).to_table(columns=[ID, column], filter=f"{ID} = {sql_literal(row_id)}")
    if table.num_rows == 0:
        raise DataError(f"no row with id {row_id!r} in the dataset")
    value = table[column][0].as_py()
    if value is None:
        raise DataError(f"row {row_id!r} has no value in {column} (it lacks that modality)")
    return np.asarray(value, np.float32)


@reads_dataset("data")
def search_run(
    run: str | Path,
    data: Any,
    *,
    text: str | None = None,
    image: ImageInput | None = None,
    audio: AudioInput | None = None,
    row_id: str | None = None,
    from_modality: str | None = None,
    modality: str,
    k: int = 10,
    split: str | None = None,
    label: str | None = None,
    name: str | None = None,
    index_threshold: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> SearchResult:
    """The k rows whose `modality` embedding is nearest (cosine) to one query: a text, an image, a sound or a row.

    A row-id query uses that row's stored embedding of `from_modality` (default: `modality`) and leaves
    the row itself out. Missing columns are embedded first; a vector index is used above `index_threshold`.
    Rows added after the run embedded the dataset are not searched: the result's `note` says how many
    (and is logged as a warning).
    """
    from mmpt.embed.search import INDEX_THRESHOLD, ensure_index, search

    given = {"text": text, "image": image, "audio": audio, "row id": row_id}
    chosen = [key for key, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise DataError(
            "give exactly one query: a text, an image, an audio clip or a row id"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if isinstance(text, str) and not text.strip() or isinstance(row_id, str) and not row_id.strip():
        raise DataError("empty query: give a text, an --image, an --audio file or an --id")
    name = run_name(run, name)
    has = model_modalities(run)
    who = f"run {name}'s model"
    require_modality(modality, has, who)
    ds = _latest(data)
    encoder = None if row_id is not None else load_model(run, device)
    column = ensure_embedded(run, ds, modality, name=name, encoder=encoder, device=device, progress=progress)
    if row_id is not None:
        source = from_modality or modality
        require_modality(source, has, who)
        source_column = ensure_embedded(run, ds, source, name=name, device=device, progress=progress)
        query = _row_vector(_latest(ds), source_column, row_id)
    else:
        assert encoder is not None  # loaded above for every query but a row id
        if text is not None:
            query = encoder.embed_text([text])[0]
        elif image is not None:
            query = encoder.embed_images([image])[0]
        else:
            query = encoder.embed_audio([audio])[0]
    ensure_index(_latest(ds), column, INDEX_THRESHOLD if index_threshold is None else index_threshold)
    exclude = [row_id] if row_id is not None else []
    result = search(_latest(ds), column, query, k, split=split, label=label, exclude_ids=exclude)[0]
    result.run = str(run)
    if result.note:
        log.warning("%s", result.note)
    return result


def search_text(
    run: str | Path,
    data: Any,
    query: str,
    modality: str,
    k: int = 10,
    split: str | None = None,
    label: str | None = None,
    **kwargs: Any,
) -> SearchResult:
    """The k rows of `modality` nearest to a text query (see `search_run`)."""
    return search_run(run, data, text=query, modality=modality, k=k, split=split, label=label, **kwargs)


__all__ = ["ensure_embedded", "embeddings", "embed_run", "search_run", "search_text", "embedded_rows"]
