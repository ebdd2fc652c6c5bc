"""Cross-modal retrieval (Recall@k by row id) and label match (does the top hit share the label?).

Both work on L2-normalised embeddings, so cosine similarity is a dot product; the similarity matrix is
built a block of queries at a time, so 10k x 10k needs ~40 MB at once rather than 400 MB.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from mmpt.errors import DataError

KS = (1, 5, 10)
CHUNK = 1024


def _blocks(n: int, chunk: int) -> Iterator[slice]:
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def _check(emb: np.ndarray, n: int, what: str) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"{what} must be [{n}, D], got {list(emb.shape)}")
    return emb


def _unique_index(ids: Sequence[str], what: str) -> dict[str, int]:
    index = {rid: i for i, rid in enumerate(ids)}
    if len(index) != len(ids):
        raise DataError(f"{what} ids are not unique; retrieval matches query and target by row id")
    return index


def retrieval_ranks(
    query_emb: np.ndarray,
    query_ids: Sequence[str],
    target_emb: np.ndarray,
    target_ids: Sequence[str],
    *,
    chunk: int = CHUNK,
) -> np.ndarray:
    """1-based rank of each query's correct target (same row id); queries with no such target are dropped.

    Ties are pessimistic: rank = number of targets scoring >= the correct one, so degenerate (e.g.
    constant) embeddings score at chance instead of perfectly.
    """
    query_emb = _check(query_emb, len(query_ids), "query_emb")
    target_emb = _check(target_emb, len(target_ids), "target_emb")
    target_index = _unique_index(target_ids, "target")
    pairs = [(qi, target_index[qid]) for qi, qid in enumerate(query_ids) if qid in target_index]
    if not pairs:
        return np.zeros(0, dtype=np.int64)
    q_rows = np.array([p[0] for p in pairs], dtype=np.int64)
    t_rows = np.array([p[1] for p in pairs], dtype=np.int64)
    ranks = np.empty(len(pairs), dtype=np.int64)
    for block in _blocks(len(pairs), chunk):
        sims = query_emb[q_rows[block]] @ target_emb.T
        correct = sims[np.arange(sims.shape[0]), t_rows[block]]
        ranks[block] = (sims >= correct[:, None]).sum(axis=1)
    return ranks


def retrieval(
    query_emb: np.ndarray,
    query_ids: Sequence[str],
    target_emb: np.ndarray,
    target_ids: Sequence[str],
    *,
    ks: Sequence[int] = KS,
    chunk: int = CHUNK,
) -> dict:
    """Recall@k (fraction of queries whose same-id target ranks within the top k) and the median rank."""
    ranks = retrieval_ranks(query_emb, query_ids, target_emb, target_ids, chunk=chunk)
    if len(ranks) == 0:
        raise DataError("retrieval: no query id has a target with the same id")
    out: dict = {f"r@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    out["n_queries"] = len(ranks)
    out["n_targets"] = len(target_ids)
    return out


def label_match(
    query_emb: np.ndarray,
    query_labels: Sequence[str | None],
    target_emb: np.ndarray,
    target_labels: Sequence[str | None],
    query_ids: Sequence[str] | None = None,
    target_ids: Sequence[str] | None = None,
    exclude_same_id: bool = False,
    *,
    chunk: int = CHUNK,
) -> dict:
    """P@1: the fraction of labelled queries whose nearest labelled target has the same label.

    Unlabelled queries and targets take no part. With `exclude_same_id` (query and target are the same
    modality) a query never matches the target with its own id. Ties go to the lowest target index.
    """
    query_emb = _check(query_emb, len(query_labels), "query_emb")
    target_emb = _check(target_emb, len(target_labels), "target_emb")
    ids: tuple[Sequence[str], Sequence[str]] | None = None
    if exclude_same_id:
        if query_ids is None or target_ids is None:
            raise ValueError("exclude_same_id needs query_ids and target_ids")
        ids = (query_ids, target_ids)
    q_rows = np.array([i for i, label in enumerate(query_labels) if label is not None], dtype=np.int64)
    t_rows = np.array([i for i, label in enumerate(target_labels) if label is not None], dtype=np.int64)
    if len(q_rows) == 0 or len(t_rows) == 0:
        raise DataError("label match: needs labelled queries and labelled targets")
    t_labels = np.array([target_labels[i] for i in t_rows], dtype=object)
    q_labels = np.array([query_labels[i] for i in q_rows], dtype=object)
    self_col = np.full(len(q_rows), -1, dtype=np.int64)  # column of the query's own row among targets
    if ids is not None:
        q_ids, t_ids = ids
        pool = {t_ids[t]: j for j, t in enumerate(t_rows)}
        self_col = np.array([pool.get(q_ids[q], -1) for q in q_rows], dtype=np.int64)
    t_emb = target_emb[t_rows]
    top = np.empty(len(q_rows), dtype=np.int64)
    for block in _blocks(len(q_rows), chunk):
        sims = query_emb[q_rows[block]] @ t_emb.T
        own = self_col[block]
        has_own = np.flatnonzero(own >= 0)
        sims[has_own, own[has_own]] = -np.inf
        top[block] = sims.argmax(axis=1)
    valid = ~((self_col >= 0) & (len(t_rows) == 1))  # a lone target that is the query itself: no hit
    hits = (t_labels[top] == q_labels) & valid
    return {"p@1": float(np.mean(hits)), "n_queries": len(q_rows), "n_targets": len(t_rows)}
