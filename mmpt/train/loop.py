"""The training loop shared by pretraining and fine-tuning: one function that reads top to bottom.

Events go to RUN/metrics.jsonl (and to an optional in-process callback); checkpoints are written every
`ckpt_every` steps, at the end, and when a stop is requested (SIGTERM/SIGINT or a UI's stop event).
"""

from __future__ import annotations

import gc
import math
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mmpt.errors import ConfigError, DataError, MmptError
from mmpt.models.spec import FULL_MODALITIES
from mmpt.runs import RESUME_FILES, RunDir, read_checkpoint_state
from mmpt.train.compile import compile_towers
from mmpt.train.config import RunConfig, normalise_pairs
from mmpt.train.distributed import DistInfo, all_reduce_sum, cleanup, setup_distributed
from mmpt.train.loss import ContrastiveLoss
from mmpt.train.optim import LrScale, build_optimizer, build_scheduler

Event = dict[str, Any]
Validate = Callable[[nn.Module], dict[str, float]]


class TrainingError(MmptError):
    """Training cannot go on (e.g. the loss kept diverging)."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run reached."""

    run: RunDir
    step: int
    stopped: bool
    last: Event = field(default_factory=dict)
    best_step: int = 0
    best_metric: float = float("nan")


def train(
    cfg: RunConfig,
    run: RunDir,
    *,
    model: nn.Module | None = None,
    resume: bool = False,
    lr_scale: LrScale | None = None,
    validate: Validate | None = None,
    stop: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` (or a new one from cfg.model) on cfg.data with cfg.train, writing into `run`.

    `lr_scale` maps a parameter name to an lr multiplier (per-tower / layer-wise lr in fine-tuning);
    `validate` computes extra validation metrics (the early-stopping metric among them).
    """
    from mmpt.data.device import prefetch
    from mmpt.data.loader import build_loader, worker_context
    from mmpt.models import build_model
    from mmpt.models.checkpoint import load_state
    from mmpt.store.dataset import open_dataset

    startup = {"train_called": time.time()}  # wall-clock marks of the start-up phases, in the start event
    tc, dc = cfg.train, cfg.data
    if dc.num_workers:
        # the DataLoader workers' server starts first, before CUDA, a process group or a dataset starts threads:
        # it is then a fork of this process (mmpt.data.forked_server), with nothing left to import
        worker_context()
    dist = setup_distributed(tc.device)
    main = dist.rank == 0
    stop = stop or threading.Event()
    restore_signals = _install_signal_handlers(stop)
    try:
        _seed_everything(tc.seed)

        # ---- data: pin the dataset version so every rank and every resume reads the same rows ----------
        ds = open_dataset(dc.dataset, version=dc.version or None, storage_options=dc.storage_options or None)
        if not dc.version:
            dc.version = ds.version
            if main:
                run.write_config(cfg.to_dict())
        pairs = normalise_pairs(tc.pairs)
        needed = sorted({m for p in pairs for m in p.split("-")})
        missing = [m for m in needed if m not in ds.modalities()]
        if missing:
            raise DataError(
                f"dataset {dc.dataset} has no {', '.join(missing)} but the config trains "
                f"{', '.join(pairs)}; choose pairs with --pairs"
            )
        startup["dataset_open"] = time.time()

        # ---- model ---------------------------------------------------------------------------------------
        model = model if model is not None else build_model(cfg.model)
        absent = [m for m in needed if m not in model.modalities]
        if absent:
            raise DataError(
                f"model has no {', '.join(absent)} tower but the config trains {', '.join(pairs)}"
            )
        model.to(dist.device)
        if tc.grad_checkpointing:
            model.set_grad_checkpointing(True)
        use_bf16 = tc.precision == "bf16" or (tc.precision == "auto" and dist.device.type == "cuda")
        if (
            dist.device.type == "cuda"
        ):  # as open_clip_train: autotuned convolutions (the patch embedding), TF32
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        startup["model_built"] = time.time()

        loader = build_loader(
            ds.lance,
            model.spec,
            needed,
            dc.train_split,
            tc.batch_size,
            train=True,
            seed=tc.seed,
            rank=dist.rank,
            world_size=dist.world_size,
            num_workers=dc.num_workers,
            image_augment=dc.image_augment,
            storage_options=dc.storage_options or None,
            fast_image_decode=dc.fast_image_decode,
            gpu_jpeg_decode=dc.gpu_jpeg_decode,
        )
        val_loader = _val_loader(build_loader, ds, model, needed, cfg, dist)
        steps_per_epoch = len(loader) // tc.accum_steps
        if steps_per_epoch == 0:
            raise DataError(
                f"split '{dc.train_split}' gives fewer than {tc.accum_steps} batches of "
                f"{tc.batch_size}; lower --batch-size or accum_steps"
            )
        total_steps = tc.max_steps or tc.epochs * steps_per_epoch
        startup["loader_built"] = time.time()

        optimizer = build_optimizer(model, tc, lr_scale)
        scheduler = build_scheduler(optimizer, tc, total_steps)
        loss_fn = ContrastiveLoss(
            [p.replace("-", "_") for p in pairs], _pair_weights(tc.pair_weights), tc.loss
        )
        params = [p for g in optimizer.param_groups for p in g["params"]]

        # ---- resume: model, optimiser, schedule, RNG and data position -----------------------------------
        state: dict[str, Any] = {
            "step": 0,
            "epoch": 0,
            "batch": 0,
            "samples": 0,
            "best_step": 0,
            "best_metric": None,
        }
        if resume:
            # the newest checkpoint whose files match their checksums; corrupt ones are skipped, and said
            ckpt, skipped = run.find_checkpoint(need=RESUME_FILES)
            if ckpt is None:
                raise ConfigError(
                    f"{run.path} has no intact checkpoint to resume from ({'; '.join(skipped) or 'none yet'}); "
                    f"start it over with --run {run.path} --restart"
                )
            state, extra = read_checkpoint_state(ckpt)
            load_state(model, ckpt / "model.safetensors")
            optimizer.load_state_dict(extra["optimizer"])
            scheduler.load_state_dict(extra["scheduler"])
            _set_rng_state(extra["rng"])
            if main:
                run.truncate_metrics(state["step"])

        # towers compiled in place (same parameter names, so checkpoints and DDP are unchanged); undone at the end
        uncompile = (
            compile_towers(_towers(model, needed), backend=tc.compile_backend, scope=tc.compile_scope)
            if tc.compile_on(dist.device.type)
            else None
        )
        net: nn.Module = model
        if dist.world_size > 1:
            net = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if main:
            run.write_status(
                "running", step=state["step"], total_steps=total_steps, world_size=dist.world_size
            )
            _emit(
                run,
                on_event,
                {
                    "kind": "start",
                    "step": state["step"],
                    "total_steps": total_steps,
                    "epoch": state["epoch"],
                    "world_size": dist.world_size,
                    "params": sum(p.numel() for p in model.parameters()),
                    "trainable": sum(p.numel() for p in params),
                    "compiled": uncompile is not None,
                    "startup": startup,
                },
            )

        bar = tqdm(
            total=total_steps,
            initial=state["step"],
            disable=not (main and progress),
            unit="step",
            dynamic_ncols=True,
            desc="train",
        )
        try:
            bad_in_a_row, window = 0, _Window()
            stopped = False

            # ---- the loop ------------------------------------------------------------------------------------
            while state["step"] < total_steps and not stopped:
                loader.set_epoch(state["epoch"])
                loader.set_start_batch(state["batch"])
                # the next batch's host-to-device copy overlaps this step (a side CUDA stream; plain copy on CPU)
                for micro in _groups(prefetch(loader, dist.device, model.spec), tc.accum_steps, window):
                    model.train()
                    optimizer.zero_grad(set_to_none=True)
                    step_loss: dict[str, torch.Tensor] = {}  # on the device: read only when logged
                    for i, batch in enumerate(micro):
                        batch = _to_device(batch, dist.device)
                        sync = i == len(micro) - 1 or dist.world_size == 1
                        with (
                            nullcontext() if sync else net.no_sync(),
                            torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=use_bf16),
                        ):
                            features = net(batch)
                            loss, per_pair = loss_fn(
                                features, _masks(batch), model.logit_scale, model.logit_bias
                            )
                        (loss / len(micro)).backward()
                        for k, v in per_pair.items():
                            v = v.detach().float() / len(micro)
                            step_loss[k] = step_loss[k] + v if k in step_loss else v
                    # One host sync per step, after the backward is queued: a non-finite loss makes the
                    # gradients non-finite, and their norm is the same on every rank (DDP averages them).
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, tc.grad_clip))
                    if math.isfinite(grad_norm):
                        optimizer.step()
                        bad_in_a_row = 0
                    else:
                        bad_in_a_row += 1
                        warnings.warn(
                            f"step {state['step']}: non-finite loss or gradient, step skipped", stacklevel=1
                        )
                        if bad_in_a_row >= tc.max_bad_steps:
                            raise TrainingError(
                                f"loss or gradients were NaN/inf for {bad_in_a_row} steps in a row "
                                f"(step {state['step']}); lower the learning rate (now {tc.lr:g}) "
                                "or check the data"
                            )
                    scheduler.step()
                    with torch.no_grad():
                        for p in model.logit_scale.values():
                            p.clamp_(0, cfg.model.max_logit_scale)

                    n_samples = sum(len(b["ids"]) for b in micro) * dist.world_size
                    state["step"] += 1
                    state["batch"] += len(micro)
                    state["samples"] += n_samples
                    window.add(n_samples)
                    bar.update(1)

                    if main and (state["step"] % tc.log_every == 0 or state["step"] == total_steps):
                        logged_loss = dict(
                            zip(step_loss, torch.stack(list(step_loss.values())).tolist(), strict=True)
                        )
                        event = {
                            "kind": "train",
                            "step": state["step"],
                            "epoch": state["epoch"],
                            "loss": sum(
                                _pair_weights(tc.pair_weights).get(k, 1.0) * v for k, v in logged_loss.items()
                            ),
                            **{f"loss/{k}": v for k, v in logged_loss.items()},
                            "lr": scheduler.get_last_lr()[0],
                            **{
                                f"logit_scale/{k}": float(p.detach().exp())
                                for k, p in model.logit_scale.items()
                            },
                            "grad_norm": grad_norm,
                            **window.rates(),
                            "mem_gb": _memory_gb(dist),
                        }
                        _emit(run, on_event, event)
                        bar.set_postfix(loss=f"{event['loss']:.3f}", sps=f"{event['samples_per_s']:.0f}")

                    at_epoch_end = state["batch"] + tc.accum_steps > len(loader)
                    if val_loader is not None and (
                        (tc.val_every and state["step"] % tc.val_every == 0)
                        or (not tc.val_every and at_epoch_end)
                        or state["step"] == total_steps
                    ):
                        metrics = _validate(net, model, val_loader, loss_fn, dist, use_bf16, validate)
                        if main:
                            _emit(
                                run,
                                on_event,
                                {"kind": "val", "step": state["step"], "epoch": state["epoch"], **metrics},
                            )
                            _track_best(state, metrics, tc, run, model, optimizer, scheduler)
                        if tc.early_stop_patience and _agree(
                            main and state.get("since_best", 0) >= tc.early_stop_patience, dist
                        ):
                            state["early_stopped"] = True

                    stop_now = _agree(stop.is_set(), dist) or state.get("early_stopped", False)
                    if main and (
                        state["step"] % tc.ckpt_every == 0 or state["step"] == total_steps or stop_now
                    ):
                        _checkpoint(run, model, optimizer, scheduler, state, tc.keep_checkpoints)
                    if stop_now:
                        stopped = True
                        break
                    if state["step"] >= total_steps:
                        break
                else:
                    state["epoch"] += 1
                    state["batch"] = 0
        finally:
            bar.close()  # before an error reaches the CLI, so its one line is not drawn over
            if uncompile is not None:
                uncompile()

        if state.get("best_step") and tc.early_stop_metric:
            # Early stopping keeps the best weights: load them and point `latest` at that checkpoint.
            best_dir = run.checkpoints / f"step-{state['best_step']:07d}"
            load_state(model, best_dir / "model.safetensors")
            if main:
                run.point_latest(best_dir.name)
        stopped = stopped and not state.get("early_stopped", False)
        if main:
            run.write_status(
                "stopped" if stopped else "finished", step=state["step"], total_steps=total_steps
            )
            _emit(
                run,
                on_event,
                {"kind": "stopped" if stopped else "end", "step": state["step"], "epoch": state["epoch"]},
            )
        best = state.get("best_metric")
        return TrainResult(
            run=run,
            step=state["step"],
            stopped=stopped,
            last=(run.metrics("train") or [{}])[-1] if main else {},
            best_step=state.get("best_step", 0),
            best_metric=best if best is not None else math.nan,
        )
    except BaseException as exc:
        if main and run.path.exists() and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            run.write_status("failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    finally:
        restore_signals()
        # The DDP wrapper goes first, while the process group is still registered: when its reducer drops the
        # last reference, gloo's destructor joins its threads holding the GIL, and a thread still releasing a
        # finished collective's tensor waits for the GIL (a hang at exit, seen once in ~20 two-rank runs).
        net = None  # type: ignore[assignment]
        if dist.world_size > 1:
            gc.collect()
        cleanup()


# ---- helpers, in the order the loop uses them ------------------------------------------------------------


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT set the stop event: the loop checkpoints after the current step and returns."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # e.g. a notebook's training thread: the UI sets `stop` itself
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, lambda *_: stop.set())

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def _towers(model: nn.Module, modalities: list[str]) -> list[nn.Module]:
    """The towers the run trains: what the loop compiles. Towers, not the whole model: its forward picks rows
    by their modality masks, a data-dependent step that would split one graph."""
    return [t for t in (model.tower(m) for m in modalities) if t is not None]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _val_loader(
    build_loader: Callable, ds: Any, model: nn.Module, needed: list[str], cfg: RunConfig, dist: DistInfo
) -> Any:
    """A loader over the validation split, or None when the dataset has no such rows."""
    if not cfg.data.val_split or len(ds.split_indices(cfg.data.val_split)) == 0:
        return None
    n_val = len(ds.split_indices(cfg.data.val_split))
    return build_loader(
        ds.lance,
        model.spec,
        needed,
        cfg.data.val_split,
        min(cfg.train.batch_size, max(1, n_val // dist.world_size)),
        train=False,
        seed=cfg.train.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        num_workers=0,
        drop_last=True,
        storage_options=cfg.data.storage_options or None,
        fast_image_decode=cfg.data.fast_image_decode,
        gpu_jpeg_decode=cfg.data.gpu_jpeg_decode,
    )


def _pair_weights(weights: dict[str, float]) -> dict[str, float]:
    return {k.replace("-", "_"): float(v) for k, v in weights.items()}


class _Window:
    """Throughput and data-wait fraction over the steps since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0, self.samples, self.wait = time.perf_counter(), 0, 0.0

    def add(self, samples: int) -> None:
        self.samples += samples

    def rates(self) -> dict[str, float]:
        elapsed = max(1e-9, time.perf_counter() - self.t0)
        out = {
            "samples_per_s": self.samples / elapsed,
            "data_wait_frac": min(1.0, self.wait / elapsed),
            "time": time.time(),
        }
        self.reset()
        return out


def _groups(loader: Any, n: int, window: _Window) -> Iterator[list[dict]]:
    """Yield lists of `n` consecutive batches (one optimiser step each), timing the wait for data."""
    group: list[dict] = []
    t = time.perf_counter()
    it = iter(loader)  # (re)starts the loader's workers on the first pass: waiting for data, too
    window.wait += time.perf_counter() - t
    while True:
        t = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        window.wait += time.perf_counter() - t
        group.append(batch)
        if len(group) == n:
            yield group
            group = []


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _masks(batch: dict) -> dict[str, torch.Tensor]:
    """Each modality's row mask, left out where every row has it (the loss then needs no mask arithmetic)."""
    full = batch.get(FULL_MODALITIES, ())
    return {k[: -len("_mask")]: v for k, v in batch.items() if k.endswith("_mask") and k[:-5] not in full}


def _agree(flag: bool, dist: DistInfo) -> bool:
    """Every rank stops at the same step if any rank was asked to stop."""
    if dist.world_size == 1:
        return flag
    return float(all_reduce_sum(torch.tensor([float(flag)], device=dist.device))) > 0


@torch.no_grad()
def _validate(
    net: nn.Module,
    model: nn.Module,
    loader: Any,
    loss_fn: ContrastiveLoss,
    dist: DistInfo,
    use_bf16: bool,
    validate: Validate | None,
) -> dict[str, float]:
    """Mean contrastive loss per pair over the validation split, plus any extra metrics."""
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    loader.set_epoch(0)
    loader.set_start_batch(0)
    for batch in loader:
        batch = _to_device(batch, dist.device)
        with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            _, per_pair = loss_fn(model(batch), _masks(batch), model.logit_scale, model.logit_bias)
        for k, v in per_pair.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    out = {f"val_loss/{k}": v / max(1, n) for k, v in sums.items()}
    out["val_loss"] = sum(out.values())
    if validate is not None:
        out.update(validate(model))
    model.train()
    return out


def _track_best(
    state: dict, metrics: dict, tc: Any, run: RunDir, model: nn.Module, optimizer: Any, scheduler: Any
) -> None:
    """Remember the best value of the early-stopping metric and keep its checkpoint."""
    name = tc.early_stop_metric
    if not name:
        return
    if name not in metrics:
        raise TrainingError(
            f"early-stopping metric {name!r} is not among the validation metrics: "
            f"{', '.join(sorted(metrics))}"
        )
    value, best = metrics[name], state.get("best_metric")
    better = best is None or (value > best if tc.early_stop_mode == "max" else value < best)
    if better:
        state["best_metric"], state["best_step"], state["since_best"] = value, state["step"], 0
        ckpt = _checkpoint(run, model, optimizer, scheduler, state, tc.keep_checkpoints)
        (run.checkpoints / "best").write_text(ckpt.name)
    else:
        state["since_best"] = state.get("since_best", 0) + 1


def _checkpoint(run: RunDir, model: nn.Module, optimizer: Any, scheduler: Any, state: dict, keep: int):
    extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()}
    from mmpt.models.checkpoint import save_model

    return run.save_checkpoint(
        state["step"], lambda folder: save_model(model, folder), extra, state, keep=keep
    )


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    name, keys, *rest = s["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _memory_gb(dist: DistInfo) -> float:
    if dist.device.type == "cuda":
        return torch.cuda.max_memory_allocated(dist.device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _emit(run: RunDir, on_event: Callable[[Event], None] | None, event: Event) -> None:
    event.setdefault("time", time.time())
    run.log(event)
    if on_event is not None:
        on_event(event)
