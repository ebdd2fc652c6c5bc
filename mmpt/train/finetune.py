"""Fine-tuning: load pretrained weights, apply a freeze policy, train with the shared loop, report before/after.

A fine-tune run is a normal run directory plus
    RUN/init/            the starting weights (what WiSE-FT interpolates from and `--resume` rebuilds on)
    RUN/finetune.json    where they came from, which parameters are new and which are frozen
    RUN/eval/before.json, final.json, wise-<a>.json, final.html
and a [finetune] section in RUN/config.toml. Sources: an mmpt run or checkpoint folder, an open_clip
checkpoint file, `openclip:<model>/<tag>` (open_clip's pretrained registry, from the local cache), or
`hf:<folder or hub id>` (a pretrained HF text encoder with new image/audio towers, LiT-style); `audio_tower`
puts a pretrained HF audio encoder in (docs/pretrained.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmpt.binaries import require_compiled
from mmpt.errors import ConfigError, DataError
from mmpt.models.config import MODALITIES, ModelConfig, model_pairs
from mmpt.models.model import MultimodalModel, build_model
from mmpt.runs import RunDir
from mmpt.train.config import (
    FinetuneConfig,
    RunConfig,
    apply_overrides,
    load_config,
    normalise_pairs,
    read_toml,
)
from mmpt.train.freeze import TOWERS, apply_freeze, lr_scale_fn, tower_of
from mmpt.train.loop import TrainResult, Validate, train
from mmpt.train.pretrain import require_resumable
from mmpt.train.reporting import reporting

# Fine-tuning starts from weights that already work: a lower rate than pretraining (5e-4), a short warmup,
# few epochs, and the best validation checkpoint kept (early stopping on val_loss). 2e-4 suits the tiny
# preset on demo data; large pretrained towers (ViT-B, MiniLM unfrozen) want ~1e-5. Flags, --config and
# --set override these.
TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 2e-4,
    "weight_decay": 0.05,
    "epochs": 10,
    "warmup_steps": 10,
    "log_every": 5,
    "early_stop_metric": "val_loss",
    "early_stop_mode": "min",
    "early_stop_patience": 3,
}
# A full classification fine-tune moves the towers under a head fitted on standardised embeddings, where
# small feature changes are large: it starts from the probe (LP-FT) and needs a smaller rate.
CLASSIFY_FULL_LR = 1e-5
HF_TEXT_PREFIX = "clip.text.transformer."  # an HF tower's pretrained encoder (its projection is new)
HF_AUDIO_PREFIX = "audio.encoder."  # the same for an HF audio tower


@dataclass
class Source:
    """A model built from pretrained weights, with the names of its parameters that are newly initialised."""

    model: MultimodalModel
    fresh: set[str]
    kind: str  # run, checkpoint, open_clip, hf
    description: str


@dataclass
class FinetuneResult:
    """A finished fine-tune: the loop's result and the reports written under RUN/eval/."""

    train: TrainResult | None
    run: RunDir
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    wise: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None


# ---- sources ------------------------------------------------------------------------------------------------


def load_source(fc: FinetuneConfig, *, seed: int = 0) -> Source:
    """Build the starting model of a fine-tune from `fc.source` (+ new HF text/audio towers and added towers)."""
    from mmpt.models.hf_audio import hf_audio_config
    from mmpt.models.hf_text import hf_text_config

    torch.manual_seed(seed)  # new towers start the same way on every run
    src = _load_base(fc.source, fc.source_model, fc.context_length)
    cfg = src.model.config
    text_tower = fc.text_tower
    if text_tower:
        cfg = hf_text_config(cfg, text_tower, context_length=fc.context_length)
    if fc.add:
        unknown = [m for m in fc.add if m not in MODALITIES]
        if unknown:
            raise ConfigError(f"cannot add {unknown}: expected some of {', '.join(MODALITIES)}")
        already = [m for m in fc.add if m in cfg.modalities]
        if already:
            raise ConfigError(
                f"the source already has a {', '.join(already)} tower; --add only adds new ones"
            )
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "modalities": [*cfg.modalities, *fc.add]})
    audio_tower = fc.audio_tower
    if audio_tower:
        if "audio" in fc.add:
            raise ConfigError("--audio-tower already adds the audio tower: drop --add audio")
        cfg = hf_audio_config(cfg, audio_tower)
    if cfg is src.model.config:
        return src
    model, fresh = graft(src.model, cfg, replace_text=bool(text_tower), replace_audio=bool(audio_tower))
    return Source(
        model,
        fresh | (src.fresh & set(dict(model.named_parameters()))),
        src.kind,
        src.description
        + (f" + text tower {text_tower}" if text_tower else "")
        + (f" + audio tower {audio_tower}" if audio_tower else "")
        + (f" + new {', '.join(fc.add)} tower" if fc.add else ""),
    )


def _load_base(source: str, model_name: str, context_length: int) -> Source:
    from mmpt.eval.run import load_run_model
    from mmpt.models.checkpoint import load_model
    from mmpt.models.hf_text import HF_PREFIX, hf_text_config
    from mmpt.models.openclip_io import load_openclip_checkpoint
    from mmpt.models.presets import resolve_model_config
    from mmpt.models.sources import OPENCLIP_PREFIX, resolve_openclip

    if not source:
        raise ConfigError(
            "no pretrained source given: pass --from RUN|CHECKPOINT|OPEN_CLIP_FILE|openclip:MODEL/TAG|hf:MODEL"
        )
    if source.startswith(OPENCLIP_PREFIX):
        found = resolve_openclip(source)
        model, loaded = load_openclip_checkpoint(found.weights, model_name or found.config)
        fresh = {n for n, _ in model.named_parameters() if n not in loaded}
        return Source(model, fresh, "open_clip", f"{found.description} ({found.weights})")
    if source.startswith(HF_PREFIX):
        cfg = hf_text_config(
            resolve_model_config(model_name or "tiny"), source, context_length=context_length
        )
        model = build_model(cfg)
        fresh = {n for n, _ in model.named_parameters() if not n.startswith(HF_TEXT_PREFIX)}
        return Source(
            model,
            fresh,
            "hf",
            f"text tower {cfg.text_tower[len(HF_PREFIX) :]} with new "
            f"{', '.join(m for m in cfg.modalities if m != 'text')} towers",
        )
    path = Path(source)
    if path.is_dir() and (path / "config.toml").is_file():
        return Source(load_run_model(path), set(), "run", f"mmpt run {path}")
    if path.is_dir() and (path / "model.safetensors").is_file():
        return Source(load_model(path), set(), "checkpoint", f"mmpt checkpoint {path}")
    if path.is_file():
        model, loaded = load_openclip_checkpoint(path, model_name or None)
        fresh = {n for n, _ in model.named_parameters() if n not in loaded}
        return Source(model, fresh, "open_clip", f"open_clip checkpoint {path}")
    raise ConfigError(
        f"--from {source}: not an mmpt run or checkpoint folder, an open_clip checkpoint file, "
        "openclip:<model>/<tag> or hf:<folder or hub id>"
    )


def graft(
    src: MultimodalModel, cfg: ModelConfig, *, replace_text: bool = False, replace_audio: bool = False
) -> tuple[MultimodalModel, set[str]]:
    """A model for `cfg` holding every weight of `src` it has room for; returns it and its new parameters.

    With `replace_text` (`replace_audio`) the source's text (audio) tower is dropped: a new HF tower takes its
    place, its encoder pretrained and its projection new. A tensor whose shape differs is an error naming it.
    """
    model = build_model(cfg)
    target = model.state_dict()
    dropped = tuple(p for p, on in (("clip.text.", replace_text), ("audio.", replace_audio)) if on)
    keep = {
        k: v for k, v in src.state_dict().items() if k in target and not (dropped and k.startswith(dropped))
    }
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in keep.items()
        if tuple(v.shape) != tuple(target[k].shape)
    ]
    if wrong:
        raise ConfigError(f"source weights do not fit the new model config: {', '.join(wrong[:5])}")
    model.load_state_dict(keep, strict=False)
    pretrained = tuple(
        p for p, on in ((HF_TEXT_PREFIX, replace_text), (HF_AUDIO_PREFIX, replace_audio)) if on
    )
    fresh = {
        n
        for n, _ in model.named_parameters()
        if n not in keep and not (pretrained and n.startswith(pretrained))
    }
    return model, fresh


# ---- configuration --------------------------------------------------------------------------------------------


def resolve_finetune_config(
    *,
    source: str,
    data: str | None,
    config_file: str | Path | None = None,
    model: str | None = None,
    overrides: list[str] | None = None,
    finetune: dict[str, Any] | None = None,
    recipe: str | None = None,
    **train_fields: Any,
) -> RunConfig:
    """Fine-tune defaults, then a recipe (mmpt.train.recipes), then a TOML file, then flags; `finetune` holds
    FinetuneConfig fields (None: unset).

    The model section is filled from the source when the run starts (`prepare`).
    """
    from mmpt.train.recipes import recipe_sections

    d: dict[str, Any] = {"train": dict(TRAIN_DEFAULTS)}
    for section, values in (recipe_sections(recipe) if recipe else {}).items():
        d[section] = {**d.get(section, {}), **values}
    if config_file:
        loaded = read_toml(config_file)
        for section, values in loaded.items():
            d[section] = {**d.get(section, {}), **values} if isinstance(values, dict) else values
    lr_given = (
        "lr" in d["train"]
        and d["train"]["lr"] != TRAIN_DEFAULTS["lr"]
        or train_fields.get("lr") is not None
        or any(o.replace(" ", "").startswith("train.lr=") for o in overrides or [])
    )
    cfg = RunConfig.from_dict(d)
    cfg.finetune = cfg.finetune or FinetuneConfig()
    cfg.finetune.source = source or cfg.finetune.source
    if model:
        cfg.finetune.source_model = model
    for key, value in (finetune or {}).items():
        if value is not None:
            if not hasattr(cfg.finetune, key):
                raise ConfigError(f"unknown finetune setting {key!r}")
            setattr(cfg.finetune, key, value)
    if data:
        cfg.data.dataset = str(data)
    for key, value in train_fields.items():
        if value is not None:
            if not hasattr(cfg.train, key):
                raise ConfigError(f"unknown train setting {key!r}")
            setattr(cfg.train, key, value)
    cfg = apply_overrides(cfg, list(overrides or []))
    fc = cfg.require_finetune()
    if fc.task not in ("contrastive", "classify"):
        raise ConfigError(f"finetune.task must be contrastive or classify, got {fc.task!r}")
    if fc.head not in ("probe", "full"):
        raise ConfigError(f"finetune.head must be probe or full, got {fc.head!r}")
    if fc.class_weight not in ("balanced", "none"):
        raise ConfigError(f"finetune.class_weight must be balanced or none, got {fc.class_weight!r}")
    if fc.task == "classify" and fc.head == "full" and not lr_given:
        cfg.train.lr = CLASSIFY_FULL_LR
    for a in fc.wise_alpha:
        if not 0 <= a <= 1:
            raise ConfigError(f"--wise-alpha must be between 0 and 1, got {a}")
    if not cfg.data.dataset:
        raise ConfigError("no dataset given: pass --data DATASET (or set [data] dataset in the config file)")
    if fc.pairs_with and fc.pairs_with not in MODALITIES:
        raise ConfigError(
            f"finetune.pairs_with must be one of {', '.join(MODALITIES)}, got {fc.pairs_with!r}"
        )
    return cfg


def resolve_freeze(fc: FinetuneConfig, src: Source) -> list[str]:
    """The towers to freeze: as given, or "auto" = the text tower for a new-HF-text source, the pretrained
    image/text towers when towers are added (`add`, or a new HF audio tower), else none."""
    towers = [t for t in fc.freeze if t != "none"]
    if towers != ["auto"]:
        if "auto" in towers:
            raise ConfigError("--freeze auto cannot be combined with tower names")
        return towers
    if src.kind == "hf" or fc.text_tower:
        return ["text"]
    added = [*fc.add, *(["audio"] if fc.audio_tower else [])]
    if added:
        return [m for m in src.model.modalities if m not in added]
    return []


def default_pairs(
    model: MultimodalModel, data_modalities: set[str], frozen_towers: list[str], pairs_with: str = ""
) -> list[str]:
    """The model's pairs present in the data, minus pairs whose two towers are both frozen (and, with
    `pairs_with`, minus pairs without that modality: LanguageBind binds everything to text only)."""
    pairs = [
        p
        for p in model_pairs(model.modalities)
        if set(p.split("_")) <= data_modalities
        and not set(p.split("_")) <= set(frozen_towers)
        and (not pairs_with or pairs_with in p.split("_"))
    ]
    if not pairs:
        anchor = f" with {pairs_with}" if pairs_with else ""
        raise ConfigError(
            f"nothing to train contrastively: every pair{anchor} of {', '.join(model.modalities)} present "
            "in the data has both towers frozen"
        )
    return normalise_pairs([p.replace("_", "-") for p in pairs])


# ---- the run -------------------------------------------------------------------------------------------------


def prepare(
    cfg: RunConfig, run: str | Path, *, pairs_given: bool = True, restart: bool = False
) -> tuple[RunDir, MultimodalModel]:
    """Load the source, freeze, fix the model config and pairs, create the run folder with init weights
    (`restart`: over a run already there, RunDir.create's restart)."""
    from mmpt.models.checkpoint import save_model
    from mmpt.store.dataset import open_dataset

    fc = cfg.require_finetune()
    src = load_source(fc, seed=cfg.train.seed)
    towers = resolve_freeze(fc, src)
    names = [n for n, _ in src.model.named_parameters()]
    new_towers = [
        t
        for t in towers
        if t in TOWERS
        and src.model.tower(t) is not None
        and all(n in src.fresh for n in names if tower_of(n) == t)
    ]
    if new_towers:
        raise ConfigError(
            f"cannot freeze the {', '.join(new_towers)} tower: it is newly initialised "
            "(frozen it would stay random)"
        )
    frozen = apply_freeze(src.model, towers, fc.freeze_blocks, fc.norms_only, keep_trainable=src.fresh)
    fc.freeze = towers or ["none"]
    cfg.model = src.model.config
    if not pairs_given and fc.task == "contrastive":
        ds = open_dataset(cfg.data.dataset, version=cfg.data.version or None)
        cfg.train.pairs = default_pairs(src.model, ds.modalities(), towers, fc.pairs_with)
    if not _is_main():  # other torchrun ranks build the same model (seeded) and leave the folder to rank 0
        return RunDir(run), src.model
    run_dir = RunDir.create(run, cfg.to_dict(), restart=restart)
    save_model(src.model, run_dir.path / "init")
    (run_dir.path / "finetune.json").write_text(
        json.dumps(
            {
                "source": fc.source,
                "kind": src.kind,
                "description": src.description,
                "fresh": sorted(src.fresh),
                "frozen": frozen,
            },
            indent=1,
        )
        + "\n"
    )
    return run_dir, src.model


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def finetune(
    cfg: RunConfig,
    run: str | Path,
    *,
    pairs_given: bool = True,
    restart: bool = False,
    progress: bool = True,
    **train_kwargs: Any,
) -> FinetuneResult:
    """Fine-tune `cfg.finetune.source` on `cfg.data` into a new run folder; evaluate before and after."""
    if cfg.finetune is None:
        raise ConfigError("a fine-tune needs a [finetune] section (source, freeze policy, ...)")
    if cfg.finetune.task == "classify" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("classification fine-tuning runs in one process: start it without torchrun")
    require_compiled()  # before the run folder is created: a broken install leaves nothing behind
    run_dir, model = prepare(cfg, run, pairs_given=pairs_given, restart=restart)
    with reporting(cfg, run_dir) as trackers:  # --report-to: each metrics event also goes to the trackers
        if cfg.finetune.task == "classify":
            from mmpt.train.classify import train_classifier

            report = train_classifier(cfg, run_dir, model, progress=progress)
            return FinetuneResult(train=None, run=run_dir, after=report)
        before_too = cfg.train.eval_after and _is_main()
        before = _evaluate(model, cfg, run_dir, "before", progress) if before_too else None
        kwargs = trackers.hook(train_kwargs)
        return _train_and_report(cfg, run_dir, model, before, resume=False, progress=progress, **kwargs)


def resume_finetune(run: str | Path, *, progress: bool = True, **train_kwargs: Any) -> FinetuneResult:
    """Continue a stopped fine-tune from its latest checkpoint (same freeze policy and learning rates)."""
    from mmpt.eval.run import load_report_if_any
    from mmpt.models.checkpoint import load_model

    run_dir = RunDir.open(run)
    cfg = load_config(run_dir.config_path)
    info_path = run_dir.path / "finetune.json"
    if cfg.finetune is None or not info_path.is_file():
        raise ConfigError(f"{run} is not a fine-tune run; resume it with mmpt pretrain --resume")
    if cfg.finetune.task != "contrastive":
        raise ConfigError(
            f"{run} trained a classifier; classification runs are not resumable, start a new one"
        )
    require_resumable(run_dir, "finetune")
    model = load_model(run_dir.path / "init")
    frozen = set(json.loads(info_path.read_text())["frozen"])
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    before = load_report_if_any(run_dir.path, "before")
    with reporting(cfg, run_dir, resume=True) as trackers:
        kwargs = trackers.hook(train_kwargs)
        return _train_and_report(cfg, run_dir, model, before, resume=True, progress=progress, **kwargs)


def _train_and_report(
    cfg: RunConfig,
    run_dir: RunDir,
    model: MultimodalModel,
    before: dict | None,
    *,
    resume: bool,
    progress: bool,
    **train_kwargs: Any,
) -> FinetuneResult:
    from mmpt.eval.compare import compare
    from mmpt.eval.report import save_report
    from mmpt.train.wise import wise_checkpoint, wise_name

    fc, tc = cfg.require_finetune(), cfg.train
    validate = zero_shot_validator(cfg) if tc.early_stop_metric.startswith("val_zero_shot") else None
    result = train(
        cfg,
        run_dir,
        model=model,
        resume=resume,
        lr_scale=lr_scale_fn(model, fc.tower_lr, fc.layer_decay),
        validate=validate,
        progress=progress,
        **train_kwargs,
    )
    out = FinetuneResult(train=result, run=run_dir, before=before)
    if result.stopped or not tc.eval_after or not _is_main():
        return out
    from mmpt.eval.run import load_run_model

    out.after = _evaluate(load_run_model(run_dir.path), cfg, run_dir, "final", progress)
    if before is not None:
        out.comparison = compare(before, out.after, names=("before", "after"))
        save_report(out.comparison, run_dir.path, "compare-before")
    for alpha in fc.wise_alpha:
        from mmpt.models.checkpoint import load_model

        folder = wise_checkpoint(run_dir.path, alpha)
        out.wise[wise_name(alpha)] = _evaluate(load_model(folder), cfg, run_dir, wise_name(alpha), progress)
    from mmpt.eval.html import write_html

    write_html(
        out.after,
        run_dir.eval_dir / "final.html",
        metrics_jsonl=run_dir.metrics_path,
        comparison=out.comparison,
    )
    return out


def _evaluate(model: MultimodalModel, cfg: RunConfig, run_dir: RunDir, name: str, progress: bool) -> dict:
    """The eval report of `model` on the test split, saved as RUN/eval/<name>.json."""
    from mmpt.eval.report import save_report
    from mmpt.eval.run import evaluate_model
    from mmpt.store.dataset import open_dataset

    ds = open_dataset(cfg.data.dataset, version=cfg.data.version or None)
    report = evaluate_model(
        model,
        ds,
        cfg.data.test_split,
        prompt=cfg.require_finetune().prompt,
        device=cfg.train.device,
        progress=progress,
    )
    report["meta"]["run"] = str(run_dir.path)
    report["meta"]["weights"] = name
    save_report(report, run_dir.path, name)
    return report


def zero_shot_validator(cfg: RunConfig) -> Validate:
    """`validate` for the loop: val_zero_shot_<m>_acc for image/audio and their mean val_zero_shot_acc."""
    from mmpt.embed.compute import compute_embeddings
    from mmpt.eval.run import text_embedder
    from mmpt.eval.zero_shot import class_text_embeddings, zero_shot
    from mmpt.store.dataset import open_dataset

    ds = open_dataset(cfg.data.dataset, version=cfg.data.version or None)
    split, prompt = cfg.data.val_split, cfg.require_finetune().prompt

    def validate(model: torch.nn.Module) -> dict[str, float]:
        assert isinstance(model, MultimodalModel)  # the loop passes its model unwrapped (no DDP, no compile)
        device = next(model.parameters()).device
        wanted = [m for m in ("image", "audio") if m in model.modalities]
        embs = compute_embeddings(model, ds, split, wanted, device=device, progress=False)
        names = sorted({lab for e in embs.values() for lab in e.labels if lab is not None})
        if len(names) < 2 or "text" not in model.modalities:
            raise DataError(f"val_zero_shot_* needs text and at least two labels in split {split!r}")
        classes = class_text_embeddings(names, text_embedder(model, device), prompt)
        out = {
            f"val_zero_shot_{m}_acc": zero_shot(e.vectors, e.labels, names, classes)["accuracy"]
            for m, e in embs.items()
            if any(lab in names for lab in e.labels)
        }
        out["val_zero_shot_acc"] = float(np.mean(list(out.values())))
        return out

    return validate


def headline(report: dict | None) -> tuple[str, float | None]:
    """(name, value) of the figure a fine-tune reports first: mean zero-shot accuracy, else mean R@1."""
    if not report:
        return "none", None
    acc = {
        m: r.get("accuracy") for m, r in report.get("zero_shot", {}).items() if r.get("accuracy") is not None
    }
    if acc:
        return f"zero-shot accuracy ({', '.join(acc)})", float(np.mean(list(acc.values())))
    r1 = [r["r@1"] for r in report.get("retrieval", {}).values() if r.get("r@1") is not None]
    return ("retrieval R@1 (mean)", float(np.mean(r1))) if r1 else ("none", None)
