"""Which caption a training row shows in an epoch, for items with several (`texts` column).

The choice is a pure function of (seed, epoch, row id): no state to checkpoint, the same on any rank or worker
and after a resume, and a different draw each epoch, so over epochs every caption of an item is seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def caption_index(seed: int, epoch: int, row_id: str, n: int) -> int:
    """Index in 0..n-1 of the caption row `row_id` shows in `epoch` (uniform over captions, seeded)."""
    if n < 1:
        raise ValueError(f"a row needs at least one caption to pick from, got {n}")
    key = f"{seed}\x1f{epoch}\x1f{row_id}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % n


def pick_captions(
    seed: int,
    epoch: int,
    ids: Sequence[str],
    text: Sequence[str | None],
    texts: Sequence[Sequence[str] | None],
) -> list[str | None]:
    """Each row's caption for `epoch`: one drawn from its `texts` where it has some, else its `text`."""
    return [
        options[caption_index(seed, epoch, row_id, len(options))] if options else single
        for row_id, single, options in zip(ids, text, texts, strict=True)
    ]
