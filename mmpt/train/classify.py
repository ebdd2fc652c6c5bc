"""Supervised fine-tuning: a linear classification head on one or more towers' embeddings.

`probe`: the towers stay frozen; embeddings are computed once per split and the head is fitted on them
(full batch, cross-entropy with class weights, best epoch on the validation split kept). `full`: the
towers train with the head after a probe fit (LP-FT), through the data loader (its own short loop: the contrastive loop's loss and
checkpoints are about the towers alone). Both write RUN/head.safetensors + RUN/head.json (hashed in
RUN/checksums.json, checked when the head is loaded), a checkpoint of the towers, and RUN/eval/final.json with accuracy, macro-F1, per-class precision/recall, ROC AUC and the
confusion matrix on the test split (rows with labels never seen in training are counted, not scored).
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmpt.checksums import MANIFEST, MARKER, CorruptCheckpoint, verify_files, write_manifest
from mmpt.errors import ConfigError, DataError, MmptError
from mmpt.models.checkpoint import save_model
from mmpt.models.model import MultimodalModel
from mmpt.runs import RunDir
from mmpt.train.config import RunConfig

if TYPE_CHECKING:
    from mmpt.store.dataset import MmptDataset

HEAD_WEIGHTS = "head.safetensors"
HEAD_META = "head.json"


class CorruptHead(CorruptCheckpoint):
    """A classification head file does not match what was written (a CorruptCheckpoint, with its own way out)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        MmptError.__init__(
            self,
            f"classification head file {path} {reason}; it is not loaded: fit the head again "
            f"(mmpt finetune --run {Path(path).parent} --restart)",
        )


class LinearHead(nn.Module):
    """Logits from the concatenated embeddings of `towers`, standardised with train-split statistics.

    A row lacking one tower's modality has that block set to the train mean (zero after standardising),
    so it is classified from the towers it has.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, towers: list[str], embed_dim: int, n_classes: int):
        super().__init__()
        self.towers, self.embed_dim = list(towers), embed_dim
        width = embed_dim * len(towers)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.linear = nn.Linear(width, n_classes)

    def fit_scaler(self, x: torch.Tensor, present: torch.Tensor) -> None:
        """Per-dimension mean and std over the rows that hold each block's modality."""
        mask = present.repeat_interleave(self.embed_dim, dim=1).float()
        n = mask.sum(0).clamp_min(1.0)
        mean = (x * mask).sum(0) / n
        var = (((x - mean) * mask) ** 2).sum(0) / n
        self.mean.copy_(mean)
        self.std.copy_(var.sqrt().clamp_min(1e-6))

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        return self.linear(z * present.repeat_interleave(self.embed_dim, dim=1).to(z.dtype))


def read_labels(ds: MmptDataset, column: str) -> list[str | None]:
    """The label column as strings by row position (None where empty)."""
    if column not in ds.lance.schema.names:
        raise DataError(f"dataset {ds.uri} has no column {column!r}; choose one with --label-col")
    values = ds.lance.to_table(columns=[column]).column(column).to_pylist()
    return [None if v is None or v == "" else str(v) for v in values]


def class_weights(labels: list[str], classes: list[str], how: str) -> torch.Tensor | None:
    """Inverse-frequency weights n / (C * count) ("balanced", as sklearn) or None."""
    if how == "none":
        return None
    counts = Counter(labels)
    return torch.tensor([len(labels) / (len(classes) * counts[c]) for c in classes], dtype=torch.float32)


def _classes(labels: list[str | None], column: str, split: str) -> list[str]:
    classes = sorted({lab for lab in labels if lab is not None})
    if not classes:
        raise DataError(f"label column {column!r} has no labels in split {split!r}")
    if len(classes) == 1:
        raise DataError(
            f"label column {column!r} has a single class {classes[0]!r} in split {split!r}; "
            "a classifier needs at least two"
        )
    return classes


def _split_features(
    model: MultimodalModel,
    ds: MmptDataset,
    split: str,
    towers: list[str],
    labels: list[str | None],
    device: torch.device,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """Embeddings [N, D * towers] of the split's rows holding at least one tower's modality (zeros where
    a row lacks one), which towers each row holds [N, towers], and the rows' labels."""
    from mmpt.embed.compute import compute_embeddings

    positions = ds.split_indices(split)
    ids = ds.lance.take(positions, columns=["id"]).column("id").to_pylist()
    label_of = {i: labels[p] for i, p in zip(ids, positions, strict=True)}
    embs = compute_embeddings(model, ds, split, towers, batch_size=batch_size, device=device, progress=False)
    held = set().union(*(set(e.ids) for e in embs.values()))
    row_ids = [i for i in ids if i in held]
    dim = model.config.embed_dim
    x = np.zeros((len(row_ids), dim * len(towers)), np.float32)
    present = np.zeros((len(row_ids), len(towers)), bool)
    index = {i: k for k, i in enumerate(row_ids)}
    for j, t in enumerate(towers):
        for i, vec in zip(
            embs[t].ids if t in embs else [], embs[t].vectors if t in embs else [], strict=True
        ):
            x[index[i], j * dim : (j + 1) * dim] = vec
            present[index[i], j] = True
    return torch.from_numpy(x), torch.from_numpy(present), [label_of[i] for i in row_ids]


def _targets(labels: list[str | None], classes: list[str]) -> tuple[np.ndarray, Counter[str]]:
    """Class indices of labelled rows with a known class (-1 otherwise) and the unseen labels' counts."""
    known = {c: k for k, c in enumerate(classes)}
    y = np.array([known.get(lab, -1) if lab is not None else -1 for lab in labels], np.int64)
    unseen = Counter(lab for lab in labels if lab is not None and lab not in known)
    return y, unseen


def train_classifier(cfg: RunConfig, run: RunDir, model: MultimodalModel, *, progress: bool = True) -> dict:
    """Train the head (and in `full` mode the towers), evaluate on the test split, save everything."""
    from mmpt.embed.compute import pick_device
    from mmpt.store.dataset import open_dataset

    fc, tc, dc = cfg.require_finetune(), cfg.train, cfg.data
    ds = open_dataset(dc.dataset, version=dc.version or None)
    towers = fc.towers or [m for m in ("image", "audio") if m in model.modalities and m in ds.modalities()]
    bad = [t for t in towers if t not in model.modalities or t not in ds.modalities()]
    if bad or not towers:
        raise ConfigError(
            f"cannot classify from towers {bad or towers}: the model has {', '.join(model.modalities)}"
            f" and the data {', '.join(sorted(ds.modalities()))}"
        )
    labels = read_labels(ds, fc.label_col)
    train_labels = [labels[p] for p in ds.split_indices(dc.train_split)]
    classes = _classes(train_labels, fc.label_col, dc.train_split)
    device = pick_device(tc.device)
    torch.manual_seed(tc.seed)
    head = LinearHead(towers, model.config.embed_dim, len(classes))
    weights = class_weights([lab for lab in train_labels if lab is not None], classes, fc.class_weight)
    run.write_status("running", step=0)
    t0 = time.time()
    if fc.head == "probe":
        for p in model.parameters():
            p.requires_grad_(False)
        step = _fit_probe(cfg, run, model, head, ds, labels, classes, weights, device, log=True)
    else:  # LP-FT: fit the head on frozen embeddings first, then train towers and head together
        _fit_probe(cfg, run, model, head, ds, labels, classes, weights, device, log=False)
        step = _fit_full(cfg, run, model, head, ds, labels, classes, weights, device, progress)
    run.save_checkpoint(
        step,
        lambda folder: save_model(model, folder),
        {},
        {"step": step, "epoch": 0, "batch": 0, "samples": 0},
        keep=1,
    )
    save_head(run.path, head, classes, fc.label_col, fc.head)
    report = _test_report(cfg, run, model, head, ds, labels, classes, device)
    run.write_status("finished", step=step, seconds=round(time.time() - t0, 1))
    run.log({"kind": "end", "step": step, "time": time.time()})
    return report


def _fit_probe(
    cfg: RunConfig,
    run: RunDir,
    model: MultimodalModel,
    head: LinearHead,
    ds: MmptDataset,
    labels: list[str | None],
    classes: list[str],
    weights: torch.Tensor | None,
    device: torch.device,
    *,
    log: bool,
) -> int:
    """Full-batch AdamW on embeddings computed once; the epoch with the best validation accuracy is kept."""
    fc, dc = cfg.require_finetune(), cfg.data
    x, present, y_lab = _split_features(model, ds, dc.train_split, head.towers, labels, device, 128)
    y_index = _targets(y_lab, classes)[0]
    keep = torch.from_numpy(y_index >= 0)
    x, present, y = x[keep], present[keep], torch.from_numpy(y_index)[keep]
    head.fit_scaler(x, present)
    val = None
    if dc.val_split and len(ds.split_indices(dc.val_split)):
        vx, vp, v_lab = _split_features(model, ds, dc.val_split, head.towers, labels, device, 128)
        vy = torch.from_numpy(_targets(v_lab, classes)[0])
        if (vy >= 0).any():
            val = vx[vy >= 0], vp[vy >= 0], vy[vy >= 0]
    opt = torch.optim.AdamW(head.linear.parameters(), lr=fc.head_lr, weight_decay=0.0)
    best, best_state, every = -1.0, copy.deepcopy(head.state_dict()), max(1, fc.head_epochs // 20)
    for epoch in range(1, fc.head_epochs + 1):
        loss = F.cross_entropy(head(x, present), y, weight=weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % every and epoch != fc.head_epochs:
            continue
        if log:
            run.log(
                {
                    "kind": "train",
                    "step": epoch,
                    "epoch": epoch,
                    "loss": loss.item(),
                    "lr": fc.head_lr,
                    "time": time.time(),
                }
            )
        if val is not None:
            with torch.no_grad():
                logits = head(val[0], val[1])
            acc = float((logits.argmax(1) == val[2]).float().mean())
            if log:
                run.log(
                    {
                        "kind": "val",
                        "step": epoch,
                        "epoch": epoch,
                        "val_accuracy": acc,
                        "val_loss": F.cross_entropy(logits, val[2]).item(),
                        "time": time.time(),
                    }
                )
            if acc > best:
                best, best_state = acc, copy.deepcopy(head.state_dict())
    if val is not None:
        head.load_state_dict(best_state)
    if not log:
        run.log(
            {"kind": "probe", "step": 0, "epochs": fc.head_epochs, "val_accuracy": best, "time": time.time()}
        )
    return fc.head_epochs


def _fit_full(
    cfg: RunConfig,
    run: RunDir,
    model: MultimodalModel,
    head: LinearHead,
    ds: MmptDataset,
    labels: list[str | None],
    classes: list[str],
    weights: torch.Tensor | None,
    device: torch.device,
    progress: bool,
) -> int:
    """Towers and head trained together with cross-entropy, at the towers' learning rate (the head is already
    fitted); the epoch with the best validation accuracy is kept, with early stopping on its patience."""
    from tqdm.auto import tqdm

    from mmpt.data.loader import build_loader
    from mmpt.train.freeze import lr_scale_fn
    from mmpt.train.optim import build_scheduler, param_groups

    fc, tc, dc = cfg.require_finetune(), cfg.train, cfg.data
    model.to(device)
    head.to(device)
    known = {c: k for k, c in enumerate(classes)}
    target = torch.tensor([known.get(lab, -1) if lab is not None else -1 for lab in labels], dtype=torch.long)
    loader = build_loader(
        ds.lance,
        model.spec,
        head.towers,
        dc.train_split,
        tc.batch_size,
        train=True,
        seed=tc.seed,
        num_workers=dc.num_workers,
    )
    if len(loader) == 0:
        raise DataError(f"split {dc.train_split!r} has fewer rows than one batch of {tc.batch_size}")
    groups = param_groups(model, tc.weight_decay, tc.lr, lr_scale_fn(model, fc.tower_lr, fc.layer_decay))
    groups.append({"params": list(head.linear.parameters()), "lr": tc.lr, "weight_decay": 0.0})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=tc.lr, betas=tc.adam_betas(), eps=tc.eps)
    total = tc.max_steps or tc.epochs * len(loader)
    sched = build_scheduler(opt, tc, total)
    w = weights.to(device) if weights is not None else None
    best = _val_accuracy(cfg, model, head, ds, target, device)
    best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(head.state_dict()))
    since_best, step, epoch = 0, 0, 0
    bar = tqdm(total=total, disable=not progress, unit="step", desc="classify", dynamic_ncols=True)
    while step < total:
        loader.set_epoch(epoch)
        for batch in loader:
            y = target[batch["index"]].to(device)
            keep = y >= 0
            if not keep.any():
                continue
            model.train()
            x, present = _batch_features(model, batch, head.towers, device)
            loss = F.cross_entropy(head(x, present)[keep], y[keep], weight=w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == total:
                run.log(
                    {
                        "kind": "train",
                        "step": step,
                        "epoch": epoch,
                        "loss": loss.item(),
                        "lr": sched.get_last_lr()[0],
                        "time": time.time(),
                    }
                )
            if step >= total:
                break
        acc = _val_accuracy(cfg, model, head, ds, target, device)
        if acc is not None:
            run.log({"kind": "val", "step": step, "epoch": epoch, "val_accuracy": acc, "time": time.time()})
            if best is None or acc > best:
                best, since_best = acc, 0
                best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(head.state_dict()))
            else:
                since_best += 1
        epoch += 1
        if tc.early_stop_patience and since_best >= tc.early_stop_patience:
            break
    bar.close()
    if best is not None:
        model.load_state_dict(best_state[0])
        head.load_state_dict(best_state[1])
    return step


def _batch_features(
    model: MultimodalModel, batch: dict[str, Any], towers: list[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    feats = model({k: v for k, v in batch.items() if k.split("_")[0] in towers})
    present = torch.stack([batch[f"{t}_mask"] for t in towers], dim=1)
    return torch.cat([feats[t] for t in towers], dim=1), present


@torch.no_grad()
def _val_accuracy(
    cfg: RunConfig,
    model: MultimodalModel,
    head: LinearHead,
    ds: MmptDataset,
    target: torch.Tensor,
    device: torch.device,
) -> float | None:
    from mmpt.data.loader import build_loader

    split = cfg.data.val_split
    if not split or len(ds.split_indices(split)) == 0:
        return None
    model.eval()
    loader = build_loader(ds.lance, model.spec, head.towers, split, 128, train=False, drop_last=False)
    right = total = 0
    for batch in loader:
        y = target[batch["index"]].to(device)
        keep = y >= 0
        pred = head(*_batch_features(model, batch, head.towers, device)).argmax(1)
        right += int((pred[keep] == y[keep]).sum())
        total += int(keep.sum())
    return right / total if total else None


def _test_report(
    cfg: RunConfig,
    run: RunDir,
    model: MultimodalModel,
    head: LinearHead,
    ds: MmptDataset,
    labels: list[str | None],
    classes: list[str],
    device: torch.device,
) -> dict:
    from mmpt.eval.html import write_html
    from mmpt.eval.metrics import classification_metrics
    from mmpt.eval.report import build_report, save_report

    fc, dc = cfg.require_finetune(), cfg.data
    model.eval()
    head.to("cpu")
    x, present, y_lab = _split_features(model, ds, dc.test_split, head.towers, labels, device, 128)
    y, unseen = _targets(y_lab, classes)
    keep = torch.from_numpy(y >= 0)
    n_train = sum(labels[p] is not None for p in ds.split_indices(dc.train_split))
    base = {
        "mode": fc.head,
        "label_col": fc.label_col,
        "class_weight": fc.class_weight,
        "n_train": int(n_train),
        "n_unseen": sum(unseen.values()),
        "unseen_test_labels": dict(sorted(unseen.items())),
    }
    if keep.any():
        with torch.no_grad():
            proba = torch.softmax(head(x[keep].cpu(), present[keep].cpu()), dim=1).numpy()
        result = {**classification_metrics([classes[i] for i in y[y >= 0]], proba, classes), **base}
    else:
        result = {
            "accuracy": None,
            "macro_f1": None,
            "n": 0,
            "classes": classes,
            "note": "no test row has a label seen in training",
            **base,
        }
    report = build_report(
        linear_probe={"+".join(head.towers): result},
        meta={
            "run": str(run.path),
            "dataset": str(ds.uri),
            "version": ds.version,
            "split": dc.test_split,
            "task": "classify",
            "label_col": fc.label_col,
        },
    )
    save_report(report, run.path, "final")
    write_html(report, run.eval_dir / "final.html", metrics_jsonl=run.metrics_path)
    return report


def save_head(run: str | Path, head: LinearHead, classes: list[str], label_col: str, mode: str) -> Path:
    """RUN/head.safetensors (scaler and linear layer) + RUN/head.json (towers, classes, label column, mode), then
    their sha256 in RUN/checksums.json once both are on disk (mmpt.checksums)."""
    from safetensors.torch import save_file

    run = Path(run)
    (run / MANIFEST).unlink(missing_ok=True)  # a half-rewritten head must not pass as the old one
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
        str(run / HEAD_WEIGHTS),
        metadata={"format": "pt", MARKER: MANIFEST},
    )
    (run / HEAD_META).write_text(
        json.dumps(
            {"towers": head.towers, "classes": classes, "label_col": label_col, "mode": mode}, indent=1
        )
        + "\n"
    )
    write_manifest(run, [HEAD_WEIGHTS, HEAD_META])
    return run / HEAD_WEIGHTS


def check_head(run: Path) -> None:
    """Check RUN/head.safetensors and RUN/head.json against RUN/checksums.json: CorruptHead names a file that
    does not match; ConfigError when the run has no head."""
    if not (run / HEAD_META).is_file() and not (run / MANIFEST).is_file():
        raise ConfigError(f"{run} has no classification head ({HEAD_META})")
    try:
        verify_files(run, (HEAD_WEIGHTS, HEAD_META))
    except CorruptCheckpoint as exc:
        raise CorruptHead(exc.path, exc.reason) from None


def load_head(run: str | Path, embed_dim: int) -> tuple[LinearHead, dict]:
    """The head of a classification run (for towers of width `embed_dim`) and its head.json, after checking both
    against RUN/checksums.json; a file that does not match, or does not read, raises CorruptHead naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run = Path(run)
    check_head(run)
    # verified (a head saved before checksums existed was only checked for its structure)
    try:
        meta = json.loads((run / HEAD_META).read_text())
        head = LinearHead(list(meta["towers"]), embed_dim, len(meta["classes"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptHead(run / HEAD_META, f"does not read ({type(exc).__name__}: {exc})") from None
    try:
        head.load_state_dict(load_file(str(run / HEAD_WEIGHTS)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptHead(run / HEAD_WEIGHTS, f"does not fit the head of {HEAD_META} ({first})") from None
    return head, meta


def load_classifier(run: str | Path) -> tuple[MultimodalModel, LinearHead, dict]:
    """(towers, head, head.json) of a classification run; the head is checked before the towers are loaded."""
    from mmpt.eval.run import load_run_model

    run = Path(run)
    check_head(run)
    model = load_run_model(run)
    head, meta = load_head(
        run, model.config.embed_dim
    )  # checked again: its digests are remembered, not re-read
    return model, head, meta
