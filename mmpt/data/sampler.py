"""Batch sampler: the split's rows, reshuffled per epoch, cut into global batches that every rank slices.

A global batch holds world_size * batch_size rows and rank r takes the r-th contiguous slice, so two ranks
of 8 see exactly the global batches one rank of 16 sees. Every rank gets the same number of batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lance
import numpy as np
import pyarrow.compute as pc
from torch.utils.data import Sampler

from mmpt.errors import DataError
from mmpt.store.schema import SPLIT


@dataclass(frozen=True)
class BatchItem:
    """One rank's share of one global batch: what a DataLoader worker needs to build it."""

    epoch: int
    batch_index: int  # index of the global batch within the epoch (the same on every rank)
    positions: np.ndarray  # int64 row positions for `take` / `read_blobs`
    slots: np.ndarray  # each row's offset within the global batch (feeds the per-row augmentation seed)
    padded: np.ndarray  # bool: row repeats an earlier one to even out ranks (eval code drops these)


def split_positions(ds: lance.LanceDataset, split: str | None) -> np.ndarray:
    """Row positions (int64) of a split, scanning only the split column; None means every row."""
    if split is None:
        return np.arange(ds.count_rows(), dtype=np.int64)
    splits = ds.to_table(columns=[SPLIT]).column(SPLIT)
    positions = np.flatnonzero(pc.equal(splits, split).to_numpy(zero_copy_only=False))
    if positions.size == 0:
        existing = sorted(s for s in pc.unique(splits).to_pylist() if s is not None)
        raise DataError(
            f"split {split!r} has no rows; the dataset's splits are: {', '.join(existing) or '(none)'}"
        )
    return positions.astype(np.int64)


class ShardedBatchSampler(Sampler[BatchItem]):
    """Yields this rank's BatchItems for one epoch; `set_epoch` reseeds the shuffle, `start_batch` skips."""

    def __init__(
        self,
        positions: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        split: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in a world of size {world_size}")
        if seed < 0:
            raise DataError(f"seed must be non-negative, got {seed}")
        self.positions = np.asarray(positions, dtype=np.int64)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch, self.start_batch = 0, 0
        n, global_batch = len(self.positions), batch_size * world_size
        if drop_last and n < global_batch:
            size = (
                f"{global_batch} ({world_size} ranks x {batch_size})" if world_size > 1 else f"{batch_size}"
            )
            raise DataError(f"batch size {size} is larger than the {n} rows of split {split!r}")
        self.num_batches = n // global_batch if drop_last else -(-n // global_batch)

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's global row order: a permutation seeded by (seed, epoch) when shuffling."""
        if not self.shuffle:
            return self.positions
        return self.positions[np.random.default_rng([self.seed, epoch]).permutation(len(self.positions))]

    def items(self, epoch: int, start_batch: int = 0) -> list[BatchItem]:
        """This rank's batches of `epoch` from `start_batch` on (built eagerly: a snapshot of the state)."""
        order, bs, ws = self.order(epoch), self.batch_size, self.world_size
        out = []
        for b in range(start_batch, self.num_batches):
            rows = order[b * bs * ws : (b + 1) * bs * ws]
            padded = np.zeros(len(rows), dtype=bool)
            if len(rows) < bs * ws and ws > 1:  # last partial global batch: wrap around to split evenly
                extra = -len(rows) % ws
                rows = np.concatenate([rows, np.resize(order, extra)])
                padded = np.concatenate([padded, np.ones(extra, dtype=bool)])
            per_rank = len(rows) // ws
            sl = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
            slots = np.arange(len(rows), dtype=np.int64)
            out.append(BatchItem(epoch, b, rows[sl].copy(), slots[sl], padded[sl]))
        return out

    def __iter__(self) -> Iterator[BatchItem]:
        return iter(self.items(self.epoch, self.start_batch))
