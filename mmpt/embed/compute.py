"""Batched inference over a dataset split: embeddings per modality, for eval, export and search."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from mmpt.models.model import MultimodalModel
    from mmpt.store.dataset import MmptDataset

T = TypeVar("T")


@dataclass
class SplitEmbeddings:
    """Embeddings of the rows of one split that hold one modality, in dataset order."""

    ids: list[str]
    labels: list[str | None]
    vectors: np.ndarray  # float32 [N, D], L2-normalised


def pick_device(device: str = "auto") -> torch.device:
    """cuda when asked for or available under "auto", else cpu (one-line error if cuda is asked for but absent)."""
    from mmpt.errors import ConfigError

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA requested but no GPU is available; use --device cpu or auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def compute_embeddings(
    model: MultimodalModel,
    dataset: MmptDataset,
    split: str | None,
    modalities: Sequence[str] | None = None,
    *,
    batch_size: int = 128,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    rows: np.ndarray | None = None,
    progress: bool = True,
) -> dict[str, SplitEmbeddings]:
    """Embed every row of `split` (or the given row positions) for each modality the row holds.

    Uses bf16 autocast on CUDA; decoding happens in DataLoader workers when num_workers > 0.
    """
    wanted = [
        m for m in (modalities or model.modalities) if m in model.modalities and m in dataset.modalities()
    ]
    out: dict[str, tuple[list[str], list[str | None], list[np.ndarray]]] = {m: ([], [], []) for m in wanted}
    for _, batch in iter_embeddings(
        model,
        dataset,
        wanted,
        split=split,
        rows=rows,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
    ):
        for m, part in batch.items():
            ids, labels, vecs = out[m]
            ids.extend(part.ids)
            labels.extend(part.labels)
            vecs.append(part.vectors)
    return {
        m: SplitEmbeddings(ids, labels, np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32))
        for m, (ids, labels, vecs) in out.items()
    }


def iter_embeddings(
    model: MultimodalModel,
    dataset: MmptDataset,
    modalities: list[str],
    *,
    split: str | None = None,
    rows: np.ndarray | None = None,
    batch_size: int = 128,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    progress: bool | tqdm = True,
) -> Generator[tuple[list[str], dict[str, SplitEmbeddings]], None, None]:
    """Per loader batch, its row ids and each modality's embeddings of the rows holding it (one decode pass).

    Without workers, the next batches are decoded in a background thread while the model runs on the
    current one. `progress` may be a tqdm bar to advance (one bar over several calls); workers stop at the end.
    """
    from mmpt.data.loader import build_loader

    dev = device if isinstance(device, torch.device) else pick_device(device)
    model.eval().to(dev)
    loader = build_loader(
        dataset,  # an MmptDataset carries its storage options to the workers
        model.spec,
        list(modalities),
        split,
        batch_size,
        train=False,
        drop_last=False,
        num_workers=num_workers,
        rows=rows,
    )
    own_bar = not isinstance(progress, tqdm)
    bar = (
        progress
        if isinstance(progress, tqdm)
        else tqdm(total=loader.num_rows, disable=not progress, unit="row", desc="embed", dynamic_ncols=True)
    )
    try:
        with loader, closing(prefetched(loader) if num_workers == 0 else iter(loader)) as batches:
            for batch in batches:
                yield batch["ids"], _embed_batch(model, batch, modalities, dev)
                bar.update(len(batch["ids"]))
    finally:
        if own_bar:
            bar.close()


@torch.no_grad()
def _embed_batch(
    model: MultimodalModel, batch: dict[str, Any], modalities: list[str], dev: torch.device
) -> dict[str, SplitEmbeddings]:
    """Run the towers on one batch (bf16 autocast on CUDA) and keep the rows holding each modality."""
    tensors = {k: v.to(dev, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        features = model(tensors)
    out = {}
    for m in modalities:
        mask = batch[f"{m}_mask"].numpy()
        keep = np.flatnonzero(mask)
        vectors = features[m].float().cpu().numpy()[mask] if m in features else np.zeros((0, 0), np.float32)
        out[m] = SplitEmbeddings([batch["ids"][i] for i in keep], [batch["labels"][i] for i in keep], vectors)
    return out


def prefetched(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield `items` while a background thread builds the next `depth` of them.

    Decoding (PIL, soundfile, Lance reads) and the forward both release the GIL, so the two overlap on
    spare cores without the seconds it takes a DataLoader worker process to start. Errors are re-raised
    here; closing the generator stops the thread after the item it is building.
    """
    slots: queue.Queue = queue.Queue(depth)
    stop, end = threading.Event(), object()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # handed to the consumer
            put((end, exc))

    thread = threading.Thread(target=produce, name="mmpt-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()
