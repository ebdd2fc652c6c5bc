"""Fine-tuning: freeze policies, learning-rate multipliers, early stopping, WiSE-FT, new towers, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmpt.errors import ConfigError
from mmpt.models import build_model, load_model, preset_config
from mmpt.runs import RunDir
from mmpt.train.config import load_config
from mmpt.train.finetune import finetune, prepare, resolve_finetune_config
from mmpt.train.freeze import apply_freeze, lr_scale_fn, param_places
from mmpt.train.loop import train
from mmpt.train.wise import interpolate

QUICK = ["data.num_workers=0", "train.warmup_steps=2", "train.log_every=1"]


@pytest.fixture(scope="module")
def pretrained(demo_dataset, tmp_path_factory) -> Path:
    """A briefly pretrained tiny run on the demo data (the starting point of the fine-tunes here)."""
    from mmpt.train.pretrain import pretrain, resolve_config

    cfg = resolve_config(
        data=str(demo_dataset.uri),
        model="tiny",
        max_steps=21,
        batch_size=32,
        overrides=[*QUICK, "train.eval_after=false", "train.log_every=10"],
    )
    run = tmp_path_factory.mktemp("ft") / "pretrained"
    pretrain(cfg, run, progress=False)
    return run


def _ft(pretrained_or_source, data, **kw):
    overrides = [*QUICK, *kw.pop("overrides", [])]
    return resolve_finetune_config(
        source=str(pretrained_or_source), data=str(data), overrides=overrides, **kw
    )


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / latest / "model.safetensors"))


# ---- freeze policies and learning-rate multipliers (units) -------------------------------------------------


def test_freeze_whole_towers_first_blocks_and_norms_only():
    model = build_model(preset_config("tiny"))
    frozen = set(apply_freeze(model, ["text"], {"image": 2}))
    places = param_places(model)
    for name, p in model.named_parameters():
        place = places[name]
        expect = place.tower == "text" or (place.tower == "image" and place.depth <= 2)
        assert (name in frozen) == expect == (not p.requires_grad), name
    assert "clip.visual.transformer.resblocks.1.mlp.c_fc.weight" in frozen
    assert "clip.visual.transformer.resblocks.2.mlp.c_fc.weight" not in frozen

    model = build_model(preset_config("tiny"))
    apply_freeze(model, norms_and_projections_only=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {
        "clip.visual.proj",
        "clip.text.text_projection",
        "audio.vit.head.weight",
        "clip.visual.ln_post.weight",
        "audio.vit.blocks.0.norm1.weight",
        "logit_scale.image_text",
    } <= trainable
    assert not any(("attn" in n or "mlp" in n or "embed" in n) for n in trainable)


def test_freeze_errors_are_one_line():
    model = build_model(preset_config("tiny"))
    with pytest.raises(ConfigError, match="cannot freeze \\['vision'\\]"):
        apply_freeze(model, ["vision"])
    with pytest.raises(ConfigError, match="freeze_blocks.image must be between 0 and 3"):
        apply_freeze(model, first_n_blocks={"image": 4})
    with pytest.raises(ConfigError, match="leaves nothing to train"):
        apply_freeze(model, ["image", "text", "audio", "heads"])


def test_lr_scale_per_tower_and_layer_decay():
    model = build_model(preset_config("tiny"))
    scale = lr_scale_fn(model, {"image": 0.5, "heads": 2.0}, layer_decay=0.5)
    assert scale("clip.visual.proj") == 0.5  # head of the image tower: the tower's rate
    assert scale("clip.visual.transformer.resblocks.2.attn.in_proj_weight") == 0.25
    assert scale("clip.visual.transformer.resblocks.0.attn.in_proj_weight") == 0.5**4
    assert scale("clip.visual.conv1.weight") == 0.5**5  # the stem: one step below block 0
    assert scale("clip.text.transformer.resblocks.2.ln_1.weight") == 0.5
    assert scale("audio.vit.blocks.1.attn.qkv.weight") == 0.5
    assert scale("logit_scale.image_text") == 2.0
    with pytest.raises(ConfigError, match="layer_decay must be in"):
        lr_scale_fn(model, layer_decay=0.0)


def test_a_frozen_tower_runs_in_eval_mode_without_autograd():
    model = build_model(preset_config("tiny"))
    apply_freeze(model, ["text"])
    model.train()
    assert not model.tower("text").training and model.tower("image").training
    tokens = torch.zeros(2, 32, dtype=torch.long)
    assert not model.encode("text", tokens).requires_grad
    assert model.encode("image", torch.randn(2, 3, 64, 64)).requires_grad


def test_wise_interpolation_endpoints_and_middle():
    torch.manual_seed(0)
    pre = build_model(preset_config("tiny")).state_dict()
    ft = {k: v + torch.randn_like(v) if v.is_floating_point() else v for k, v in pre.items()}
    ft["new.weight"] = torch.ones(3)  # a tower added by the fine-tune: no pretrained value
    at0, at1, mid = interpolate(pre, ft, 0.0), interpolate(pre, ft, 1.0), interpolate(pre, ft, 0.5)
    assert all(torch.equal(at0[k], pre[k]) for k in pre) and torch.equal(at0["new.weight"], ft["new.weight"])
    assert all(torch.equal(at1[k], ft[k]) for k in ft)
    k = "clip.visual.proj"
    assert torch.allclose(mid[k], (pre[k] + ft[k]) / 2)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        interpolate(pre, ft, 1.5)


# ---- real fine-tunes --------------------------------------------------------------------------------------------


def test_frozen_parameters_stay_bit_identical_and_wise_hits_the_endpoints(pretrained, demo_dataset, tmp_path):
    cfg = _ft(
        pretrained,
        demo_dataset.uri,
        max_steps=4,
        batch_size=32,
        lr=1e-3,
        finetune={"freeze": ["text"], "freeze_blocks": {"image": 2}, "wise_alpha": [0.0, 1.0]},
        overrides=["train.early_stop_metric=''"],
    )
    run = tmp_path / "frozen"
    result = finetune(cfg, run, progress=False)
    assert result.train.step == 4
    init, final = load_file(str(run / "init" / "model.safetensors")), _final_state(run)
    frozen = set(json.loads((run / "finetune.json").read_text())["frozen"])
    assert frozen and all(k.startswith(("clip.text.", "clip.visual.")) for k in frozen)
    assert all(torch.equal(init[k], final[k]) for k in frozen)  # not even weight decay touched them
    changed = [k for k in final if k not in frozen and not torch.equal(init[k], final[k])]
    assert (
        "clip.visual.transformer.resblocks.2.mlp.c_fc.weight" in changed
        and "audio.vit.head.weight" in changed
    )
    # the source run's own weights are those of RUN/init
    source = load_model(
        pretrained / "checkpoints" / (pretrained / "checkpoints" / "latest").read_text().strip()
    )
    assert all(torch.equal(v, init[k]) for k, v in source.state_dict().items())
    # WiSE-FT: alpha 0 is the starting point, alpha 1 the fine-tuned model; both evaluated
    w0 = load_file(str(run / "wise-0" / "model.safetensors"))
    w1 = load_file(str(run / "wise-1" / "model.safetensors"))
    assert all(torch.equal(w0[k], init[k]) for k in init) and all(torch.equal(w1[k], final[k]) for k in final)
    assert set(result.wise) == {"wise-0", "wise-1"}
    assert (run / "eval" / "wise-0.json").is_file() and (run / "eval" / "final.html").is_file()
    assert result.wise["wise-0"]["zero_shot"] == result.before["zero_shot"]


def test_early_stopping_restores_the_best_checkpoint(pretrained, demo_dataset, tmp_path):
    cfg = _ft(
        pretrained,
        demo_dataset.uri,
        max_steps=8,
        batch_size=32,
        lr=1e-3,
        finetune={"freeze": ["none"]},
        overrides=[
            "train.val_every=1",
            "train.early_stop_metric='score'",
            "train.early_stop_mode='max'",
            "train.early_stop_patience=2",
            "train.eval_after=false",
        ],
    )
    run_dir, model = prepare(cfg, tmp_path / "early")
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.9, 0.9, 0.9])  # best at the 2nd validation, then 2 worse: stop

    result = train(cfg, run_dir, model=model, validate=lambda m: {"score": next(scores)}, progress=False)
    assert (result.step, result.best_step, result.best_metric) == (4, 2, 0.5)
    ckpts = run_dir.path / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-0000002" == (ckpts / "best").read_text().strip()
    best, last = load_file(str(ckpts / "step-0000002" / "model.safetensors")), _state_at(ckpts, 4)
    now = model.state_dict()
    assert all(torch.equal(now[k].cpu(), best[k]) for k in best)
    assert not all(torch.equal(last[k], best[k]) for k in best)
    assert run_dir.status()["state"] == "finished"


def _state_at(ckpts: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(ckpts / f"step-{step:07d}" / "model.safetensors"))


def test_audio_tower_added_to_a_pretrained_image_text_pair(pretrained, demo_dataset, tmp_path):
    from mmpt.eval.run import load_run_model
    from mmpt.models.openclip_io import export_openclip

    weights, _ = export_openclip(load_run_model(pretrained), tmp_path / "pair.safetensors")  # + pair.json
    cfg = _ft(
        weights,
        demo_dataset.uri,
        max_steps=3,
        batch_size=32,
        lr=1e-3,
        finetune={"add": ["audio"]},
        overrides=["train.eval_after=false"],
    )
    run = tmp_path / "bind-audio"
    finetune(cfg, run, pairs_given=False, progress=False)
    saved = json.loads((run / "finetune.json").read_text())
    assert saved["kind"] == "open_clip" and all(k.startswith(("audio.", "logit_")) for k in saved["fresh"])
    config = load_config(RunDir.open(run).config_path)
    assert config.model.modalities == ["image", "text", "audio"]
    assert config.finetune.freeze == ["image", "text"]  # "auto": the pretrained towers
    assert config.train.pairs == ["audio-text", "image-audio"]  # pairs with both towers frozen are left out
    init, final = load_file(str(run / "init" / "model.safetensors")), _final_state(run)
    pair = load_file(str(weights))
    assert torch.equal(final["clip.visual.proj"], pair["visual.proj"])
    assert torch.equal(final["clip.text.text_projection"], pair["text_projection"])
    assert not torch.equal(final["audio.vit.head.weight"], init["audio.vit.head.weight"])
    # WiSE-FT at alpha 0: the pretrained pair comes back, the new tower (no pretrained value) stays fine-tuned
    from mmpt.train.wise import wise_checkpoint

    w0 = load_file(str(wise_checkpoint(run, 0.0) / "model.safetensors"))
    assert all(torch.equal(w0[k], final[k]) for k in saved["fresh"])
    assert torch.equal(w0["clip.visual.proj"], init["clip.visual.proj"])


def test_bad_sources_and_policies_are_one_line_errors(pretrained, demo_dataset, tmp_path):
    from mmpt.models.openclip_io import export_openclip

    with pytest.raises(ConfigError, match="not an mmpt run or checkpoint folder"):
        finetune(_ft(tmp_path / "nowhere", demo_dataset.uri), tmp_path / "a", progress=False)
    weights, _ = export_openclip(
        build_model(preset_config("tiny")), tmp_path / "tiny.pt", config_name="other"
    )
    with pytest.raises(ConfigError, match=r"shapes differ for clip\.visual\..* vs model"):
        finetune(_ft(weights, demo_dataset.uri, model="small"), tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="cannot freeze the audio tower: it is newly initialised"):
        cfg = _ft(weights, demo_dataset.uri, model="tiny", finetune={"add": ["audio"], "freeze": ["audio"]})
        finetune(cfg, tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="already has a audio tower"):
        finetune(
            _ft(pretrained, demo_dataset.uri, finetune={"add": ["audio"]}), tmp_path / "d", progress=False
        )
    with pytest.raises(ConfigError, match="wise-alpha must be between 0 and 1"):
        _ft(pretrained, demo_dataset.uri, finetune={"wise_alpha": [2.0]})


# ---- the acceptance flow, as a user runs it -----------------------------------------------------------------------


def _mmpt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmpt", *args], capture_output=True, text=True, timeout=600)


def test_cli_finetune_with_frozen_text_improves_and_eval_compares(pretrained, demo_dataset, tmp_path):
    run = tmp_path / "R"
    proc = _mmpt(
        "finetune",
        "--from",
        str(pretrained),
        "--data",
        str(demo_dataset.uri),
        "--run",
        str(run),
        "--freeze",
        "text",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--num-workers",
        "0",
        "--quiet",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["headline"]["metric"].startswith("zero-shot accuracy")
    assert out["headline"]["after"] > out["headline"]["before"]
    assert out["comparison"]["names"] == ["before", "after"]
    assert (run / "eval" / "before.json").is_file() and (run / "eval" / "final.json").is_file()

    proc = _mmpt("eval", "--run", str(run), "--compare", str(pretrained), "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    comparison = json.loads(proc.stdout)["comparison"]
    assert comparison["names"] == [pretrained.name, "R"]
    row = comparison["metrics"]["zero_shot.image.accuracy"]
    assert row[pretrained.name] is not None and row["R"] is not None
    assert set(comparison["zero_shot_retention"]) == {"image", "audio"}


def test_cli_errors_are_one_line(pretrained, demo_dataset, tmp_path, capsys):
    from mmpt.cli import main

    (tmp_path / "R").mkdir()
    (tmp_path / "R" / "config.toml").write_text("")
    cases = [
        (["--run", str(tmp_path / "R")], "already holds a run"),
        (
            ["--run", str(tmp_path / "S"), "--tower-lr", "image"],
            "bad --tower-lr 'image': expected TOWER=VALUE",
        ),
        (["--run", str(tmp_path / "S"), "--wise-alpha", "-1"], "--wise-alpha must be between 0 and 1"),
        (["--run", str(tmp_path / "S"), "--task", "classify", "--label-col", "nope"], "has no column 'nope'"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["finetune", "--from", str(pretrained), "--data", str(demo_dataset.uri), "--quiet", *extra])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 1 and err.startswith("error: ") and message in err and "\n" not in err


def test_a_stopped_fine_tune_resumes_with_the_same_frozen_parameters(pretrained, demo_dataset, tmp_path):
    import threading

    from mmpt.train.finetune import resume_finetune

    cfg = _ft(
        pretrained,
        demo_dataset.uri,
        max_steps=4,
        batch_size=32,
        lr=1e-3,
        finetune={"freeze": ["text"]},
        overrides=["train.early_stop_metric=''", "train.eval_after=false"],
    )
    stop = threading.Event()
    run = tmp_path / "stopped"
    first = finetune(
        cfg,
        run,
        progress=False,
        stop=stop,
        on_event=lambda e: stop.set() if e.get("kind") == "train" and e["step"] == 2 else None,
    )
    assert first.train.stopped and first.train.step == 2
    resumed = resume_finetune(run, progress=False)
    assert not resumed.train.stopped and resumed.train.step == 4
    init, final = load_file(str(run / "init" / "model.safetensors")), _final_state(run)
    text = [k for k in init if k.startswith("clip.text.")]
    assert all(torch.equal(init[k], final[k]) for k in text)
    assert not torch.equal(init["clip.visual.proj"], final["clip.visual.proj"])
    with pytest.raises(ConfigError, match="is not a fine-tune run"):
        resume_finetune(pretrained)
