"""`mmpt embed --ray`: embedding columns backfilled on a Ray cluster with lance-ray's distributed `add_columns`.

Each Ray worker holds one model replica (on a GPU where the cluster has them) and embeds the rows lance-ray
hands it, decoded as the single-process path decodes them (`mmpt.embed.compute.iter_embeddings`). Every
batch's vectors are first staged durably where the single-process path stages them (`EmbeddingWriter`), so
a failed job leaves the dataset at its previous version and the next run, with Ray or without, reuses them.
A new column is written by `add_columns` in one Merge commit; a column that exists already (rows added since)
is topped up through the same workers, the staging and `upsert_column`, as `mmpt embed` does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmpt.embed.columns import run_tag, sql_literal, tag_version, to_vector_array, vector_type
from mmpt.embed.encoder import checkpoint_dir, model_modalities, run_name
from mmpt.embed.export import EmbeddingWriter
from mmpt.errors import ConfigError, DataError
from mmpt.store.schema import ID, SPLIT, embedding_column

if TYPE_CHECKING:
    from mmpt.embed.encoder import Encoder
    from mmpt.store.dataset import MmptDataset

log = logging.getLogger(__name__)

FAIL_ROW = (
    "MMPT_TEST_RAY_FAIL_ROW"  # test hook: the batch holding this row position raises (earlier ones staged)
)


@dataclass(frozen=True)
class EmbedJob:
    """What a worker needs to embed rows of one pinned dataset version (plain data, pickled to workers)."""

    checkpoint: str
    name: str
    uri: str
    version: int
    storage_options: dict[str, str] | None
    modalities: tuple[str, ...]
    split: str | None
    dim: int
    batch_size: int
    device: str
    fail_row: int | None = None

    def column(self, modality: str) -> str:
        return embedding_column(self.name, modality)

    def metadata(self, modality: str) -> dict[str, str]:
        """The embedding column's field metadata (as `write_embeddings` sets it)."""
        return {"mmpt.kind": "embedding", "mmpt.run": self.name, "mmpt.modality": modality}


class RowEmbedder:
    """Embeds rows given by Lance row address: staged vectors are reused, new ones computed and staged."""

    def __init__(self, job: EmbedJob) -> None:
        self.job = job
        self._dataset: MmptDataset | None = None
        self._starts: dict[int, int] = {}  # fragment id -> position of its first live row
        self._live: dict[int, np.ndarray | None] = {}  # fragment id -> live row offsets (None: no deletions)
        self._staged: dict[str, set[str]] | None = None
        self._writers: dict[str, EmbeddingWriter] = {}

    @property
    def dataset(self) -> MmptDataset:
        if self._dataset is None:
            from mmpt.store.dataset import open_dataset

            job = self.job
            self._dataset = open_dataset(job.uri, version=job.version, storage_options=job.storage_options)
            position = 0
            for fragment in self._dataset.lance.get_fragments():
                self._starts[fragment.fragment_id] = position
                position += fragment.count_rows()
        return self._dataset

    def encoder(self) -> Encoder:
        """This process's model replica (`load_model` keeps it loaded for every later batch)."""
        from mmpt.embed.encoder import load_model

        return load_model(self.job.checkpoint, self.job.device)

    def writer(self, modality: str) -> EmbeddingWriter:
        if modality not in self._writers:
            job = self.job
            self._writers[modality] = EmbeddingWriter(
                job.uri, job.name, modality, job.dim, storage_options=job.storage_options
            )
        return self._writers[modality]

    def positions(self, addresses: np.ndarray) -> np.ndarray:
        """Row positions (scan order of the pinned version, as `take` and the loader use) of row addresses."""
        self.dataset  # noqa: B018 - loads the fragment starts
        fragments, offsets = addresses >> 32, addresses & 0xFFFFFFFF
        out = np.empty(len(addresses), np.int64)
        for fid in np.unique(fragments).tolist():
            here = fragments == fid
            live = self._live_offsets(int(fid))
            local = offsets[here] if live is None else np.searchsorted(live, offsets[here])
            out[here] = self._starts[int(fid)] + local.astype(np.int64)
        return out

    def _live_offsets(self, fid: int) -> np.ndarray | None:
        if fid not in self._live:
            fragment = self.dataset.lance.get_fragment(fid)
            if fragment is None:
                raise DataError(f"fragment {fid} is not in version {self.job.version} of {self.job.uri}")
            if fragment.metadata.deletion_file is None:
                self._live[fid] = None
            else:
                rows = fragment.to_table(columns=[], with_row_address=True)["_rowaddr"]
                self._live[fid] = rows.to_numpy() & 0xFFFFFFFF
        return self._live[fid]

    def staged(self) -> dict[str, set[str]]:
        """Ids staged per modality when this worker started (a failed run's work, to reuse)."""
        if self._staged is None:
            self._staged = {}
            for m in self.job.modalities:
                staging = self.writer(m)._staged()
                self._staged[m] = (
                    set() if staging is None else set(staging.to_table(columns=[ID])[ID].to_pylist())
                )
        return self._staged

    def embed(self, addresses: np.ndarray) -> dict[str, tuple[list[str], np.ndarray]]:
        """Vectors per modality of the rows at `addresses` that still need one in the run's column (within
        the split): staged ones read back, the others computed and staged before they are returned."""
        from mmpt.embed.compute import iter_embeddings

        job = self.job
        positions = self.positions(np.asarray(addresses, np.uint64))
        schema = self.dataset.schema.names
        existing = [job.column(m) for m in job.modalities if job.column(m) in schema]
        rows = self.dataset.take(positions, columns=[ID, SPLIT, *existing])
        ids = rows[ID].to_pylist()
        in_split = np.ones(len(ids), bool)
        if job.split is not None:
            in_split = pc.equal(rows[SPLIT], job.split).to_numpy(zero_copy_only=False)
        staged = self.staged()
        todo: dict[str, np.ndarray] = {}
        out: dict[str, tuple[list[str], np.ndarray]] = {}
        for m in job.modalities:
            pending = in_split.copy()
            if job.column(m) in existing:
                pending &= pc.is_null(rows[job.column(m)]).to_numpy(zero_copy_only=False)
            reuse = pending & np.array([i in staged[m] for i in ids], bool)
            todo[m] = pending & ~reuse
            out[m] = self._read_staged(m, [i for i, r in zip(ids, reuse, strict=True) if r])
        wanted = [m for m in job.modalities if todo[m].any()]
        if wanted:
            rows_todo = positions[np.logical_or.reduce([todo[m] for m in wanted])]
            encoder = self.encoder()
            fresh: dict[str, tuple[list[str], list[np.ndarray]]] = {m: ([], []) for m in wanted}
            todo_ids = {m: {i for i, t in zip(ids, todo[m], strict=True) if t} for m in wanted}
            for _, parts in iter_embeddings(
                encoder.model,
                self.dataset,
                wanted,
                rows=rows_todo,
                batch_size=job.batch_size,
                device=encoder.device,
                progress=False,
            ):
                for m, part in parts.items():
                    keep = [k for k, i in enumerate(part.ids) if i in todo_ids[m]]
                    fresh[m][0].extend(part.ids[k] for k in keep)
                    fresh[m][1].append(part.vectors[keep])
            if job.fail_row is not None and job.fail_row in positions.tolist():
                raise RuntimeError(f"injected failure at row {job.fail_row} ({FAIL_ROW})")
            for m, (new_ids, chunks) in fresh.items():
                if not new_ids:
                    continue
                vectors = np.concatenate(chunks)
                self.writer(m).add(new_ids, vectors)  # durable before the column is committed
                old_ids, old = out[m]
                out[m] = (old_ids + new_ids, np.concatenate([old, vectors]))
        return out

    def _read_staged(self, modality: str, ids: list[str]) -> tuple[list[str], np.ndarray]:
        if not ids:
            return [], np.zeros((0, self.job.dim), np.float32)
        from mmpt.embed.columns import to_matrix

        staging = self.writer(modality)._staged()
        assert staging is not None, "ids were staged when this worker started"
        wanted = pa.array(ids, pa.string())
        table = staging.to_table(columns=[ID, "vector"], filter=pc.field(ID).isin(wanted))
        return table[ID].to_pylist(), to_matrix(table["vector"], self.job.dim)


class ColumnUDF:
    """lance-ray add_columns transform: a batch of (id, _rowaddr) in, the run's embedding columns out."""

    def __init__(self, job: EmbedJob) -> None:
        self.job = job
        self._embedder: RowEmbedder | None = None

    def output_schema(self) -> pa.Schema:
        job = self.job
        return pa.schema(
            [pa.field(job.column(m), vector_type(job.dim), metadata=job.metadata(m)) for m in job.modalities]
        )

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        from concurrent.futures import ThreadPoolExecutor

        if self._embedder is None:
            self._embedder = RowEmbedder(self.job)
        addresses = batch.column("_rowaddr").to_numpy()
        ids = batch.column(ID).to_pylist()
        where = {row_id: k for k, row_id in enumerate(ids)}
        columns = []
        # Lance calls this from its own async runtime, where reading a dataset cannot block: read elsewhere.
        with ThreadPoolExecutor(1) as thread:
            got = thread.submit(self._embedder.embed, addresses).result()
        for m in self.job.modalities:  # in the order of output_schema
            got_ids, vectors = got[m]
            full = np.zeros((len(ids), self.job.dim), np.float32)
            valid = np.zeros(len(ids), bool)
            index = np.array([where[i] for i in got_ids], np.int64)
            full[index], valid[index] = vectors, True
            array = to_vector_array(full)
            columns.append(
                pa.FixedSizeListArray.from_arrays(array.values, self.job.dim, mask=pa.array(~valid))
            )
        return pa.RecordBatch.from_arrays(columns, schema=self.output_schema())


class StageUDF:
    """Ray Data actor for topping up existing columns: embeds and stages its rows, returns how many."""

    def __init__(self, job: EmbedJob) -> None:
        self.embedder = RowEmbedder(job)

    def __call__(self, batch: pa.Table) -> pa.Table:
        got = self.embedder.embed(batch.column("_rowaddr").to_numpy())
        return pa.table({"rows": [sum(len(ids) for ids, _ in got.values())]})


def ray_embed(
    run: str | Path,
    data: Any,
    modalities: list[str] | None = None,
    split: str | None = None,
    *,
    address: str | None = None,
    batch_size: int = 256,
    chunk_rows: int = 2048,
    device: str = "auto",
    name: str | None = None,
    concurrency: int | None = None,
    storage_options: dict[str, str] | None = None,
    quiet: bool = False,
) -> dict[str, int]:
    """`mmpt.embed.api.embed_run` on a Ray cluster: the same columns, tag and resumability; rows embedded
    per modality. `chunk_rows` rows make one worker batch (the staging unit); `concurrency` workers (default:
    one per GPU of the cluster, else one per CPU) each hold one model replica."""
    from mmpt.embed.api import _wanted
    from mmpt.models.checkpoint import load_config
    from mmpt.store.dataset import MmptDataset, open_dataset
    from mmpt.store.ray_ingest import connect

    if chunk_rows < 1 or batch_size < 1:
        raise ConfigError("batch size and chunk rows must be at least 1")
    name = run_name(run, name)
    checkpoint = checkpoint_dir(run)
    ds = data if isinstance(data, MmptDataset) else open_dataset(str(data), storage_options=storage_options)
    wanted = _wanted(model_modalities(run), ds.modalities(), modalities, f"run {name}'s model")
    if split is not None and split not in ds.splits():
        raise DataError(f"split {split!r} has no rows; the dataset's splits are: {', '.join(ds.splits())}")
    connect(address, quiet=quiet)
    gpus = _cluster_gpus() if device != "cpu" else 0
    if device == "cuda" and not gpus:
        raise ConfigError("--device cuda, but the Ray cluster has no GPUs; use --device cpu or auto")
    job = EmbedJob(
        checkpoint=str(checkpoint.resolve()),
        name=name,
        uri=ds.lance.uri,
        version=ds.version,
        storage_options=ds.storage_options,
        modalities=tuple(wanted),
        split=split,
        dim=int(load_config(checkpoint).embed_dim),
        batch_size=batch_size,
        device="cuda" if gpus else "cpu",
        fail_row=int(os.environ[FAIL_ROW]) if os.environ.get(FAIL_ROW) else None,
    )
    remote = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    workers = concurrency or (gpus or _cluster_cpus())
    new = tuple(m for m in wanted if job.column(m) not in ds.schema.names)
    old = tuple(m for m in wanted if m not in new)
    for m in wanted:
        EmbeddingWriter(job.uri, name, m, job.dim, storage_options=job.storage_options).prepare()
    before = {m: _count(job, m) for m in old}
    if old:
        _top_up(dataclasses.replace(job, modalities=old), chunk_rows, workers, remote)
    if new:
        _add_columns(dataclasses.replace(job, modalities=new), chunk_rows, workers, remote)
    written = {}
    for m in wanted:
        writer = EmbeddingWriter(job.uri, name, m, job.dim, storage_options=job.storage_options)
        if m in old:
            writer.commit()
            written[m] = _count(job, m) - before[m]
        else:
            writer.discard()
            written[m] = _count(job, m)
    return written


def _add_columns(job: EmbedJob, chunk_rows: int, workers: int, remote: dict[str, Any]) -> None:
    """New columns: lance-ray's add_columns over every fragment, one Merge commit, then the run's tag."""
    import lance
    from lance.udf import BatchUDF
    from lance_ray import add_columns

    udf = ColumnUDF(job)
    log.info("embedding %s with %d Ray workers", ", ".join(job.column(m) for m in job.modalities), workers)
    try:
        add_columns(
            job.uri,
            transform=BatchUDF(udf, output_schema=udf.output_schema()),
            read_columns=[ID, "_rowaddr"],
            read_version=job.version,
            storage_options=job.storage_options,
            batch_size=chunk_rows,
            concurrency=workers,
            ray_remote_args=remote,
        )
    except Exception as exc:  # noqa: BLE001 - Ray and Lance raise many types; the dataset is unchanged
        from mmpt.store.ray_ingest import _task_error

        raise DataError(
            f"Ray embedding failed, so the dataset stays at version {job.version} (the vectors staged so "
            f"far are kept: run again to finish): {_task_error(exc)}"
        ) from None
    version = lance.dataset(job.uri, storage_options=job.storage_options).version
    tag_version(job.uri, run_tag(job.name), version, job.storage_options)


def _top_up(job: EmbedJob, chunk_rows: int, workers: int, remote: dict[str, Any]) -> None:
    """Existing columns: the rows still without a vector, embedded and staged by Ray Data actors."""
    from lance_ray import read_lance

    condition = " OR ".join(f"`{job.column(m)}` IS NULL" for m in job.modalities)
    if job.split is not None:
        condition = f"({condition}) AND {SPLIT} = {sql_literal(job.split)}"
    rows = read_lance(
        job.uri,
        columns=[ID],
        filter=condition,
        storage_options=job.storage_options,
        dataset_options={"version": job.version},
        with_metadata=True,
    ).materialize()  # ids and addresses only; read first, so the reads never wait for CPUs the actors hold
    try:
        rows.map_batches(
            StageUDF,
            fn_constructor_kwargs={"job": job},
            batch_size=chunk_rows,
            batch_format="pyarrow",
            concurrency=workers,
            **remote,
        ).materialize()
    except Exception as exc:  # noqa: BLE001 - as in _add_columns
        from mmpt.store.ray_ingest import _task_error

        raise DataError(
            f"Ray embedding failed, so the dataset stays at version {job.version} (the vectors staged so "
            f"far are kept: run again to finish): {_task_error(exc)}"
        ) from None


def _count(job: EmbedJob, modality: str) -> int:
    import lance

    ds = lance.dataset(job.uri, storage_options=job.storage_options)
    column = job.column(modality)
    return ds.count_rows(filter=f"`{column}` IS NOT NULL") if column in ds.schema.names else 0


def _cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))
