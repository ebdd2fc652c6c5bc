"""Evaluate a model or a run directory on a dataset split and save the report under RUN/eval/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmpt.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mmpt.models.model import MultimodalModel
    from mmpt.store.dataset import MmptDataset

DEFAULT_PROMPT = "a photo of a {label}"


def load_run_model(run_or_checkpoint: str | Path, map_location: str = "cpu") -> MultimodalModel:
    """The model of a run's latest checkpoint, or of a checkpoint folder itself."""
    from mmpt.models.checkpoint import load_model
    from mmpt.runs import RunDir

    path = Path(run_or_checkpoint)
    if (path / "model.safetensors").is_file():
        return load_model(path, map_location=map_location)
    ckpt = RunDir.open(path).require_checkpoint()  # the newest intact one; corrupt ones are skipped, and said
    return load_model(ckpt, map_location=map_location)


def text_embedder(model: MultimodalModel, device: torch.device) -> Callable[[list[str]], np.ndarray]:
    """A function texts -> L2-normalised text embeddings [N, D] (numpy) with the model's tokenizer."""
    from mmpt.models.tokenizer import build_tokenizer

    tokenize = build_tokenizer(model.spec)

    @torch.no_grad()
    def embed(texts: list[str]) -> np.ndarray:
        return model.encode_text(tokenize(list(texts)).to(device)).float().cpu().numpy()

    return embed


def evaluate_model(
    model: MultimodalModel,
    dataset: MmptDataset,
    split: str = "test",
    *,
    prompt: str = DEFAULT_PROMPT,
    probe_split: str | None = None,
    device: str = "auto",
    batch_size: int = 128,
    progress: bool = True,
) -> dict[str, Any]:
    """The eval report of DESIGN.md (zero-shot, retrieval, label match; a linear probe when probe_split is set)."""
    from mmpt.embed.compute import compute_embeddings, pick_device
    from mmpt.eval.report import evaluate_embeddings

    if len(dataset.split_indices(split)) == 0:
        raise DataError(f"split {split!r} of {dataset.uri} is empty")
    dev = pick_device(device)
    embs = compute_embeddings(model, dataset, split, batch_size=batch_size, device=dev, progress=progress)
    as_tuples = {m: (e.ids, e.labels, e.vectors) for m, e in embs.items() if len(e.ids)}
    if "{label}" not in prompt:
        raise ConfigError(f"prompt {prompt!r} must contain {{label}}")
    text_fn = text_embedder(model, dev) if "text" in model.modalities else None
    probe = None
    if probe_split:
        train_embs = compute_embeddings(
            model, dataset, probe_split, batch_size=batch_size, device=dev, progress=progress
        )
        probe = {m: (e.ids, e.labels, e.vectors) for m, e in train_embs.items() if len(e.ids)}
    return evaluate_embeddings(
        as_tuples,
        text_fn,
        probe,
        prompt=prompt,
        meta={"dataset": str(dataset.uri), "version": dataset.version, "split": split},
    )


def evaluate_run(
    run: str | Path,
    dataset: str | None = None,
    split: str = "test",
    *,
    name: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a run's latest checkpoint on a split of its dataset (or another one) and save RUN/eval/<name>.json."""
    from mmpt.eval.report import save_report
    from mmpt.runs import RunDir
    from mmpt.store.dataset import open_dataset

    model = load_run_model(run)
    run_dir = RunDir.open(run) if (Path(run) / "config.toml").is_file() else None
    uri = dataset or (run_dir.config_dict().get("data", {}).get("dataset") if run_dir else None)
    if not uri:
        raise ConfigError("no dataset given: pass --data DATASET")
    report = evaluate_model(model, open_dataset(uri), split, **kwargs)
    report["meta"]["run"] = str(run)
    if run_dir is not None:
        ckpt = run_dir.latest_checkpoint()
        report["meta"]["checkpoint"] = ckpt.name if ckpt else None
        save_report(report, run_dir.path, name or f"{split}")
    return report


def load_report_if_any(run: str | Path, name: str) -> dict[str, Any] | None:
    """RUN/eval/<name>.json if it exists."""
    path = Path(run) / "eval" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None
