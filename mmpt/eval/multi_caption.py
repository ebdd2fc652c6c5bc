"""Retrieval between items and their several captions, as COCO, Flickr30k, AudioCaps and Clotho report it.

Text queries are every caption of every item; a caption hits @k when its own item ranks in the top k items.
An item query is scored against all captions of all items and hits @k when any of its own captions ranks in
the top k. mAP@10 follows the audio-retrieval papers (LAION-CLAP's evaluation, DCASE task 6b): text -> item
has one relevant item, so its AP@10 is 1/rank within the top 10, else 0; item -> text has every own caption
relevant, AP@10 = (sum over own captions within the top 10 of their precision there) / number of own
captions. Ties count against the query (a wrong target scoring the same as a right one ranks above it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmpt.errors import DataError
from mmpt.eval.retrieval import KS, _blocks, _check, _unique_index

CHUNK = 256


def text_to_item_ranks(
    text_emb: np.ndarray,
    text_items: Sequence[str],
    item_emb: np.ndarray,
    item_ids: Sequence[str],
    *,
    chunk: int = CHUNK,
) -> np.ndarray:
    """1-based rank of each caption's own item among all items (1 + wrong items scoring >= it)."""
    text_emb = _check(text_emb, len(text_items), "text_emb")
    item_emb = _check(item_emb, len(item_ids), "item_emb")
    index = _unique_index(item_ids, "item")
    missing = sorted({t for t in text_items if t not in index})
    if missing:
        raise DataError(f"captions of items that are not among the targets: {', '.join(missing[:3])}")
    own = np.array([index[t] for t in text_items], dtype=np.int64)
    ranks = np.empty(len(text_items), dtype=np.int64)
    for block in _blocks(len(text_items), chunk):
        sims = text_emb[block] @ item_emb.T
        correct = sims[np.arange(sims.shape[0]), own[block]]
        ranks[block] = (sims >= correct[:, None]).sum(axis=1)  # counts the own item once: 1 + wrong ones
    return ranks


def item_to_text_ranks(
    item_emb: np.ndarray,
    item_ids: Sequence[str],
    text_emb: np.ndarray,
    text_items: Sequence[str],
    *,
    chunk: int = CHUNK,
) -> list[np.ndarray]:
    """Per item, the sorted 1-based positions of its own captions in its ranking of all captions.

    The j-th best own caption sits at j + (wrong captions scoring >= it); the first entry is the rank at
    which the item query first hits.
    """
    item_emb = _check(item_emb, len(item_ids), "item_emb")
    text_emb = _check(text_emb, len(text_items), "text_emb")
    index = _unique_index(item_ids, "item")
    owner = np.array([index.get(t, -1) for t in text_items], dtype=np.int64)
    out: list[np.ndarray] = []
    for block in _blocks(len(item_ids), chunk):
        sims = item_emb[block] @ text_emb.T
        for row, item in enumerate(range(block.start, block.stop)):
            mine = owner == item
            if not mine.any():
                raise DataError(f"item {item_ids[item]!r} has no caption")
            own_scores = np.sort(sims[row, mine])[::-1]
            wrong = np.sort(sims[row, ~mine])
            # wrong captions scoring >= each own score: len(wrong) - (first index where wrong >= score)
            above = len(wrong) - np.searchsorted(wrong, own_scores, side="left")
            out.append(np.arange(1, len(own_scores) + 1) + above)
    return out


def recall_figures(first_hits: np.ndarray, ks: Sequence[int] = KS) -> dict:
    """R@k, median and mean rank of the first hit of each query."""
    first_hits = np.asarray(first_hits)
    out: dict = {f"r@{k}": float(np.mean(first_hits <= k)) for k in ks}
    out["median_rank"] = float(np.median(first_hits))
    out["mean_rank"] = float(np.mean(first_hits))
    return out


def caption_retrieval(
    item_emb: np.ndarray,
    item_ids: Sequence[str],
    text_emb: np.ndarray,
    text_items: Sequence[str],
    *,
    item: str,
    ks: Sequence[int] = KS,
) -> dict[str, dict]:
    """Both directions between items of modality `item` and their captions, under the report keys
    `text_to_<item>` and `<item>_to_text`: R@k, median/mean rank, mAP@10 and the query counts."""
    if len(item_ids) == 0 or len(text_items) == 0:
        raise DataError("caption retrieval needs items and captions")
    t_ranks = text_to_item_ranks(text_emb, text_items, item_emb, item_ids)
    positions = item_to_text_ranks(item_emb, item_ids, text_emb, text_items)
    text_to_item = recall_figures(t_ranks, ks)
    text_to_item["mAP@10"] = float(np.mean(np.where(t_ranks <= 10, 1.0 / t_ranks, 0.0)))
    text_to_item.update(n_queries=len(t_ranks), n_targets=len(item_ids))
    item_to_text = recall_figures(np.array([p[0] for p in positions]), ks)
    item_to_text["mAP@10"] = float(np.mean([_ap_at(p, 10) for p in positions]))
    item_to_text.update(n_queries=len(item_ids), n_targets=len(text_items))
    return {f"text_to_{item}": text_to_item, f"{item}_to_text": item_to_text}


def _ap_at(positions: np.ndarray, k: int) -> float:
    """AP@k of one query whose relevant targets sit at the sorted 1-based `positions`."""
    hits = positions[positions <= k]
    precision = np.arange(1, len(hits) + 1) / hits
    return float(precision.sum() / len(positions))
