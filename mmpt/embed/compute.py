"""Batched inference over a dataset split: embeddings per modality, for eval, export and search."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


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


@torch.no_grad()
def compute_embeddings(
    model: nn.Module,
    dataset,
    split: str | None,
    modalities: list[str] | None = None,
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
    from mmpt.data.loader import build_loader

    dev = device if isinstance(device, torch.device) else pick_device(device)
    wanted = [m for m in (modalities or model.modalities) if m in model.modalities and m in dataset.modalities()]
    model.eval().to(dev)
    loader = build_loader(dataset.lance, model.spec, wanted, split, batch_size, train=False, drop_last=False,
                          num_workers=num_workers, rows=rows)
    out: dict[str, tuple[list, list, list]] = {m: ([], [], []) for m in wanted}
    bar = tqdm(total=loader.num_rows, disable=not progress, unit="row", desc="embed", dynamic_ncols=True)
    for batch in loader:
        batch = {k: v.to(dev, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            features = model(batch)
        for m in wanted:
            mask = batch[f"{m}_mask"].cpu().numpy()
            ids, labels, vecs = out[m]
            ids.extend(i for i, keep in zip(batch["ids"], mask, strict=True) if keep)
            labels.extend(lab for lab, keep in zip(batch["labels"], mask, strict=True) if keep)
            vecs.append(features[m].float().cpu().numpy()[mask])
        bar.update(len(batch["ids"]))
    bar.close()
    return {m: SplitEmbeddings(ids, labels, np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32))
            for m, (ids, labels, vecs) in out.items()}
