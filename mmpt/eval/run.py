"""Evaluate a model or a run directory on a dataset split and save the report under RUN/eval/."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmpt.errors import ConfigError, DataError
from mmpt.store.schema import ID, LABELS

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

    tokenize = build_tokenizer(model.spec, trim=True)

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
    label_sets = _label_sets(dataset, split, embs) if LABELS in dataset.schema.names else None
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
        label_sets=label_sets,
    )


def _label_sets(dataset: MmptDataset, split: str, embs: Mapping[str, Any]) -> dict[str, list]:
    """Each embedded row's `labels` list (multi-label rows), per modality, aligned with its embeddings."""
    table = dataset.take(dataset.split_indices(split), columns=[ID, LABELS]).to_pydict()
    by_id = dict(zip(table[ID], table[LABELS], strict=True))
    return {m: [by_id.get(rid) for rid in e.ids] for m, e in embs.items() if len(e.ids)}


def evaluate_run(
    run: str | Path,
    dataset: str | None = None,
    split: str = "test",
    *,
    name: str | None = None,
    protocol: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a run's latest checkpoint on a split of its dataset (or another one) and save RUN/eval/<name>.json.

    With `protocol` (mmpt.eval.protocols: esc50, urbansound8k, audiocaps, clotho, coco, flickr30k) the
    protocol decides the rows and figures instead, and the report is named after it by default; `split`,
    `prompt` and `probe_split` do not apply then.
    """
    from mmpt.eval.report import save_report
    from mmpt.runs import RunDir
    from mmpt.store.dataset import open_dataset

    model = load_run_model(run)
    run_dir = RunDir.open(run) if (Path(run) / "config.toml").is_file() else None
    uri = dataset or (run_dir.config_dict().get("data", {}).get("dataset") if run_dir else None)
    if not uri:
        raise ConfigError("no dataset given: pass --data DATASET")
    if protocol is not None:
        from mmpt.embed.compute import pick_device
        from mmpt.eval.protocol_run import evaluate_protocol
        from mmpt.eval.protocols import get_protocol

        protocol = get_protocol(protocol).name  # an unknown name fails before any embedding
        dev = pick_device(kwargs.get("device", "auto"))
        options = {k: v for k, v in kwargs.items() if k in ("batch_size", "progress")}
        report = evaluate_protocol(
            model, open_dataset(uri), protocol, text_embedder(model, dev), device=dev, **options
        )
    else:
        report = evaluate_model(model, open_dataset(uri), split, **kwargs)
    report["meta"]["run"] = str(run)
    if run_dir is not None:
        ckpt = run_dir.latest_checkpoint()
        report["meta"]["checkpoint"] = ckpt.name if ckpt else None
        save_report(report, run_dir.path, name or protocol or f"{split}")
    return report


def load_report_if_any(run: str | Path, name: str) -> dict[str, Any] | None:
    """RUN/eval/<name>.json if it exists."""
    path = Path(run) / "eval" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None
