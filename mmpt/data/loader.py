"""build_loader: the training/eval batch stream over one split of a pinned Lance dataset version."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Generator, Iterator
from typing import Any, Protocol, runtime_checkable

import lance
import numpy as np
import torch
from torch.utils.data import DataLoader

from mmpt.data.reader import FAILURES, JPEG_BYTES, LanceBatchReader
from mmpt.data.sampler import ShardedBatchSampler, split_positions
from mmpt.errors import ConfigError, DataError
from mmpt.models.spec import InputSpec
from mmpt.store.parent_watch import FORKSERVER_OWNER, die_with, owner
from mmpt.store.schema import MODALITIES

# Modules the forkserver imports once; each worker is then forked from it with torch, Lance and open_clip
# already loaded, instead of importing them itself (about 4 s of CPU per worker on a small machine).
# The first one makes the server end with the process that started it (mmpt.data.forkserver_watch).
WORKER_PRELOAD = ["mmpt.data.forkserver_watch", "mmpt.data.reader", "open_clip"]

log = logging.getLogger(__name__)


def _die_with(pid: int, start: float | None, worker_id: int) -> None:
    """worker_init_fn: end this worker when the process that built the loader is gone (even by SIGKILL)."""
    die_with(pid, start)


def _whole_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """collate_fn: the reader already returns a finished batch (module-level so workers can unpickle it)."""
    return batch


class BatchLoader:
    """Iterable over batch dicts for one rank; `set_epoch` reshuffles, `set_start_batch` resumes mid-epoch."""

    def __init__(
        self, reader: LanceBatchReader, sampler: ShardedBatchSampler, *, num_workers: int = 0
    ) -> None:
        self.reader, self.sampler, self.num_workers = reader, sampler, num_workers
        self.decode_failures: Counter[str] = Counter()  # modality -> rows whose blob failed to decode
        # gpu_jpeg_decode: where the JPEG bytes workers pass on are decoded (None: the current CUDA device)
        self.jpeg_device: torch.device | None = None
        self._loader: DataLoader | None = None
        self._start_batch = 0

    @property
    def num_rows(self) -> int:
        """Rows in the split (before truncation or padding)."""
        return len(self.sampler.positions)

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        """Batches per rank per epoch (the same on every rank)."""
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle (seeded by (seed, epoch)) and augmentation the next pass uses."""
        self.sampler.set_epoch(epoch)

    def set_start_batch(self, k: int) -> None:
        """Make the next iteration skip the first k batches of the epoch without reading them (resume)."""
        if not 0 <= k <= len(self):
            raise DataError(f"start batch {k} is outside the epoch's {len(self)} batches")
        self._start_batch = k

    def __iter__(self) -> Generator[dict[str, Any], None, None]:
        if self._loader is None:
            self._loader = self._build()
        self.sampler.start_batch, self._start_batch = self._start_batch, 0
        try:
            batches = iter(self._loader)  # the sampler's items are snapshot here
        finally:
            self.sampler.start_batch = 0
        return self._count_failures(batches)

    def _count_failures(self, batches: Iterator[dict[str, Any]]) -> Generator[dict[str, Any], None, None]:
        for batch in batches:
            for modality, row_id, reason in batch.pop(FAILURES, ()):
                if not self.decode_failures[modality]:
                    log.warning(
                        "%s of row %r failed to decode (%s); marked missing, further failures are counted "
                        "in BatchLoader.decode_failures",
                        modality,
                        row_id,
                        reason,
                    )
                self.decode_failures[modality] += 1
            if JPEG_BYTES in batch:  # gpu_jpeg_decode: the batch moves to the GPU, its JPEGs decoded there
                from mmpt.data.device import to_device

                device = self.jpeg_device or torch.device("cuda", torch.cuda.current_device())
                batch = to_device(batch, device, self.reader.spec)
            yield batch

    def _build(self) -> DataLoader:
        workers = self.num_workers > 0
        return DataLoader(
            self.reader,
            batch_size=None,
            sampler=self.sampler,
            # torch's stub types collate_fn for lists of samples; with batch_size=None it gets one sample.
            collate_fn=_whole_batch,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            multiprocessing_context=worker_context() if workers else None,
            # forked by the forkserver, a worker would outlive a killed trainer: it watches the trainer itself
            worker_init_fn=functools.partial(_die_with, *owner()) if workers else None,
            persistent_workers=workers,
            prefetch_factor=2 if workers else None,
            pin_memory=torch.cuda.is_available(),
        )

    def close(self) -> None:
        """Shut the persistent workers down (they also go when the loader is garbage-collected)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class LanceHandle(Protocol):
    """A dataset handle holding a pinned LanceDataset and its storage options (mmpt.store's MmptDataset)."""

    @property
    def lance(self) -> lance.LanceDataset: ...

    storage_options: dict[str, str] | None


def build_loader(
    dataset: lance.LanceDataset | LanceHandle | str,
    spec: InputSpec,
    modalities: tuple[str, ...] | list[str],
    split: str | None,
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    drop_last: bool | None = None,
    image_augment: bool | dict[str, Any] = False,
    verify_sha256: bool = False,
    storage_options: dict[str, str] | None = None,
    rows: np.ndarray | list[int] | None = None,
    fast_image_decode: bool = True,
    gpu_jpeg_decode: bool = False,
) -> BatchLoader:
    """Batches of `split` for one rank: shuffled per epoch and augmented when `train`, in order otherwise.

    `dataset` is a LanceDataset already checked out at the version to train on (or an MmptDataset, which also
    carries its storage options, or a URI, pinned to its latest version now); workers reopen that exact version. `drop_last` defaults to `train`. `rows`
    (row positions) replaces the split filter when given, e.g. to embed a selection. `fast_image_decode`
    (without augmentation) decodes JPEGs at reduced size and resizes only the centre crop, within
    `transforms.DRAFT_TOLERANCE` of open_clip's transform. `gpu_jpeg_decode` has workers pass JPEG bytes on
    undecoded; the loader then yields batches already on the GPU, their JPEGs decoded there with nvJPEG
    (`mmpt.data.device`). It needs CUDA (ConfigError otherwise) and no image augmentation.
    """
    if gpu_jpeg_decode:
        check_gpu_jpeg_decode(train and bool(image_augment))
    ds, storage_options = _open(dataset, storage_options)
    modalities = tuple(modalities)
    _check_modalities(ds, modalities)
    sampler = ShardedBatchSampler(
        split_positions(ds, split) if rows is None else _check_rows(ds, rows),
        batch_size,
        shuffle=train,
        drop_last=train if drop_last is None else drop_last,
        seed=seed,
        rank=rank,
        world_size=world_size,
        split=split,
    )
    reader = LanceBatchReader(
        ds.uri,
        ds.version,
        spec,
        modalities,
        train=train,
        seed=seed,
        image_augment=image_augment,
        verify_sha256=verify_sha256,
        storage_options=storage_options,
        dataset=ds,
        fast_image_decode=fast_image_decode,
        gpu_jpeg_decode=gpu_jpeg_decode,
    )
    return BatchLoader(reader, sampler, num_workers=num_workers)


def check_gpu_jpeg_decode(augment: bool, cuda: bool | None = None) -> None:
    """ConfigError unless JPEGs can be decoded on the GPU: CUDA present, eval-style image transform."""
    if not (torch.cuda.is_available() if cuda is None else cuda):
        raise ConfigError("data.gpu_jpeg_decode needs a CUDA device and none is available; set it to false")
    if augment:
        raise ConfigError(
            "data.gpu_jpeg_decode applies the eval image transform only; set data.image_augment=false with it"
        )


def worker_context() -> multiprocessing.context.BaseContext:
    """The forkserver context DataLoader workers start from, preloading WORKER_PRELOAD.

    Calling it early (before building the model) starts the server, so its imports overlap the caller's.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    pid, start = owner()
    os.environ[FORKSERVER_OWNER] = (
        f"{pid}:{'' if start is None else repr(start)}"  # read by the server's preload
    )
    from multiprocessing import forkserver

    from mmpt.data.forked_server import start_forked_server

    if not start_forked_server(WORKER_PRELOAD):  # a fork of this process when safe: no second interpreter
        forkserver.ensure_running()
    return ctx


def _open(
    dataset: lance.LanceDataset | LanceHandle | str, options: dict[str, str] | None
) -> tuple[lance.LanceDataset, dict[str, str] | None]:
    if isinstance(dataset, lance.LanceDataset):
        return dataset, options
    if isinstance(dataset, LanceHandle):
        return dataset.lance, options or dataset.storage_options
    try:
        return lance.dataset(str(dataset), storage_options=options), options
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot open Lance dataset {str(dataset)!r}: {exc}") from exc


def _check_rows(ds: lance.LanceDataset, rows: np.ndarray | list[int]) -> np.ndarray:
    positions = np.asarray(rows, dtype=np.int64).reshape(-1)
    n = ds.count_rows()
    if positions.size == 0:
        raise DataError("no rows selected")
    if positions.min() < 0 or positions.max() >= n:
        raise DataError(f"row positions must lie in [0, {n}), got {positions.min()}..{positions.max()}")
    return positions


def _check_modalities(ds: lance.LanceDataset, modalities: tuple[str, ...]) -> None:
    if not modalities:
        raise DataError(f"no modalities requested; choose from {', '.join(MODALITIES)}")
    names = set(ds.schema.names)
    for modality in modalities:
        if modality not in MODALITIES:
            raise DataError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
        if modality not in names or ds.count_rows(filter=f"{modality} IS NOT NULL") == 0:
            raise DataError(f"the dataset has no {modality} values (requested modality {modality!r})")
