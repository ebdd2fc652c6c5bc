"""Loop building blocks: weight-decay groups, the lr schedule, config files and overrides, NaN handling."""

from __future__ import annotations

import math

import pytest
import torch

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config
from mmpt.runs import RunDir
from mmpt.train.config import RunConfig, apply_overrides, load_config, normalise_pairs, save_config
from mmpt.train.loop import TrainingError, train
from mmpt.train.optim import build_optimizer, param_groups, warmup_cosine
from mmpt.train.pretrain import resolve_config


def test_norms_biases_and_logit_scales_are_not_decayed():
    model = build_model(preset_config("tiny"))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, weight_decay=0.1, lr=1e-3)
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decay = {names[id(p)] for g in groups if g["weight_decay"] > 0.0 for p in g["params"]}
    assert any("logit_scale" in n for n in no_decay) and not any("logit_" in n for n in decay)
    assert all(not n.endswith(".bias") for n in decay)
    assert all(dict(model.named_parameters())[n].ndim >= 2 for n in decay)
    assert len(no_decay) + len(decay) == sum(1 for _ in model.parameters())


def test_frozen_and_zero_lr_parameters_are_left_out_of_the_optimiser():
    model = build_model(preset_config("tiny"))
    for p in model.tower_parameters("text"):
        p.requires_grad_(False)
    cfg = RunConfig().train
    opt = build_optimizer(model, cfg, lr_scale=lambda name: 0.0 if name.startswith("audio") else 0.5)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not in_opt & {id(p) for p in model.tower_parameters("text")}
    assert not in_opt & {id(p) for p in model.tower_parameters("audio")}
    assert all(g["lr"] == pytest.approx(cfg.lr * 0.5) for g in opt.param_groups)


def test_warmup_then_cosine():
    lrs = [warmup_cosine(s, warmup=10, total=110) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.5) and lrs[110] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert warmup_cosine(110, 10, 110, min_ratio=0.1) == pytest.approx(0.1)


def test_config_file_flags_and_overrides(tmp_path):
    cfg = resolve_config(
        data="d.lance",
        model="tiny",
        lr=1e-3,
        overrides=["train.warmup_steps=7", "data.num_workers=0", "train.pair_weights.image-text=2.0"],
    )
    path = tmp_path / "run.toml"
    save_config(cfg, path)
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()
    assert again.train.lr == 1e-3 and again.train.warmup_steps == 7 and again.data.num_workers == 0
    assert again.train.pair_weights == {"image-text": 2.0}
    from_file = resolve_config(config_file=path, batch_size=16)  # flags override the file
    assert from_file.train.batch_size == 16 and from_file.train.lr == 1e-3
    assert from_file.model.to_dict() == cfg.model.to_dict()
    with pytest.raises(ConfigError, match="no key 'lrr'"):
        apply_overrides(cfg, ["train.lrr=1"])
    path.write_text("[train]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)
    assert normalise_pairs("text-image, audio-text") == ["image-text", "audio-text"]


class _Diverging(torch.nn.Module):
    """A model whose features turn NaN: the loop must skip those steps, then stop with a clear message."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.modalities, self.spec = inner.modalities, inner.spec
        self.logit_scale, self.logit_bias = inner.logit_scale, inner.logit_bias

    def forward(self, batch):
        return {k: v * math.nan for k, v in self.inner(batch).items()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.inner.set_grad_checkpointing(enable)


def test_non_finite_losses_are_skipped_then_stop_the_run(demo_dataset, tmp_path):
    cfg = resolve_config(
        data=str(demo_dataset.uri),
        model="tiny",
        max_steps=20,
        batch_size=16,
        device="cpu",
        overrides=["data.num_workers=0", "train.max_bad_steps=3", "train.log_every=1"],
    )
    model = _Diverging(build_model(cfg.model))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = RunDir.create(tmp_path / "run", cfg.to_dict())
    with (
        pytest.warns(UserWarning, match="non-finite"),
        pytest.raises(TrainingError, match="3 steps in a row"),
    ):
        train(cfg, run, model=model, progress=False)
    assert run.status()["state"] == "failed" and "NaN" in run.status()["error"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no update was applied
