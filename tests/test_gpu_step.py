"""The GPU training step on CPU: token dropout (train mode only), SDPA attention in every tower, the
train.compile setting and a short compiled training run of the tiny preset with token dropout."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config
from mmpt.models.config import AudioConfig, ModelConfig
from mmpt.runs import RunDir
from mmpt.train.config import RunConfig, TrainConfig, apply_overrides
from mmpt.train.loop import train
from tests.model_support import tiny_inputs

B = 4


def _tiny(image_dropout: float = 0.0, audio_dropout: float = 0.0) -> ModelConfig:
    d = preset_config("tiny").to_dict()
    d["clip"]["vision_cfg"]["patch_dropout"] = image_dropout
    d["audio"]["token_dropout"] = audio_dropout
    return ModelConfig.from_dict(d)


def _tokens_seen(model: torch.nn.Module) -> dict[str, int]:
    """Sequence length entering the first transformer block of the image and audio towers."""
    seen: dict[str, int] = {}
    visual, audio = model.tower("image"), model.tower("audio")
    hooks = [
        # open_clip's ViT runs its blocks batch-first: [N, tokens, width]
        visual.transformer.resblocks[0].register_forward_pre_hook(
            lambda _m, args: seen.__setitem__("image", args[0].shape[1])
        ),
        audio.vit.blocks[0].register_forward_pre_hook(
            lambda _m, args: seen.__setitem__("audio", args[0].shape[1])
        ),
    ]
    x = tiny_inputs(B)
    with torch.no_grad():
        model.encode_image(x["image"]), model.encode_audio(x["audio"])
    for h in hooks:
        h.remove()
    return seen


def test_token_dropout_drops_tokens_in_training_only():
    torch.manual_seed(0)
    plain = build_model(_tiny())
    dropped = build_model(_tiny(image_dropout=0.5, audio_dropout=0.5))
    dropped.load_state_dict(plain.state_dict())  # the dropout adds no parameters

    # tiny: 64 px / patch 8 -> 64 image patches; 64 mels x 112 frames / patch 16 -> 28 audio patches (+ CLS)
    assert _tokens_seen(plain.train()) == {"image": 65, "audio": 29}
    assert _tokens_seen(dropped.train()) == {"image": 33, "audio": 15}
    assert _tokens_seen(dropped.eval()) == {"image": 65, "audio": 29}

    # at eval (and so when embedding) the model with dropout configured is the model without it
    x = tiny_inputs(B)
    plain.eval()
    with torch.no_grad():
        for name in ("image", "text", "audio"):
            assert torch.equal(dropped.encode(name, x[name]), plain.encode(name, x[name]))


def test_token_dropout_settings_are_checked():
    with pytest.raises(ConfigError, match="token_dropout"):
        AudioConfig(token_dropout=1.0).validate()
    cfg = apply_overrides(
        RunConfig(), ["model.audio.token_dropout=0.25", "model.clip.vision_cfg.patch_dropout=0.5"]
    )
    assert cfg.model.audio.token_dropout == 0.25 and cfg.model.clip["vision_cfg"]["patch_dropout"] == 0.5
    with pytest.raises(ConfigError, match="token_dropout"):
        apply_overrides(RunConfig(), ["model.audio.token_dropout=-0.1"])


def test_every_tower_attends_with_sdpa(monkeypatch):
    """open_clip's blocks (nn.MultiheadAttention) and timm's audio ViT both reach F.scaled_dot_product_attention."""
    calls = {"n": 0}
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls["n"] += 1
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model = build_model(_tiny()).train()  # training mode: the nn.MultiheadAttention fast path is not taken
    x = tiny_inputs(B)
    per_tower = {}
    for name in ("image", "text", "audio"):
        calls["n"] = 0
        model.encode(name, x[name]).sum().backward()
        per_tower[name] = calls["n"]
    # one attention call per transformer block: tiny has 3 image, 3 text and 2 audio blocks
    assert per_tower == {"image": 3, "text": 3, "audio": 2}


def test_compile_setting_defaults_to_auto_and_loads_old_configs():
    assert TrainConfig().compile == "auto"
    assert TrainConfig().compile_on("cuda") and not TrainConfig().compile_on("cpu")
    assert TrainConfig(compile=True).compile_on("cpu") and not TrainConfig(compile=False).compile_on("cuda")
    old = RunConfig.from_dict({"train": {"compile": False}})  # configs written before "auto" hold a boolean
    assert old.train.compile is False
    assert apply_overrides(RunConfig(), ["train.compile=true"]).train.compile is True
    assert apply_overrides(RunConfig(), ["train.compile=auto"]).train.compile == "auto"
    with pytest.raises(ConfigError, match="train.compile"):
        TrainConfig(compile="sometimes")


@pytest.fixture(scope="module")
def full_rows(tmp_path_factory: pytest.TempPathFactory) -> str:
    """32 demo train rows that all hold an image, a caption and audio: every batch has the same shapes."""
    from mmpt.store.synthetic import demo_row, demo_schema
    from mmpt.store.write import rows_to_batch, write_batches

    rows, i = [], 0
    while len(rows) < 32:
        row, i = demo_row(i), i + 1
        if row["split"] == "train" and all(row[m] is not None for m in ("image", "text", "audio")):
            rows.append(row)
    path = tmp_path_factory.mktemp("full") / "full.lance"
    write_batches([rows_to_batch(rows, demo_schema())], path, demo_schema())
    return str(path)


def test_compiled_training_with_token_dropout(full_rows, tmp_path, one_torch_thread):
    """A few steps of the tiny preset, all three pairs, through torch.compile'd towers (the aot_eager backend
    traces forward and backward like inductor does but skips code generation, which takes minutes on CPU)."""
    cfg = RunConfig()
    cfg.model = _tiny(image_dropout=0.5, audio_dropout=0.5)
    cfg.data.dataset, cfg.data.num_workers, cfg.data.val_split = full_rows, 0, ""
    tc = cfg.train
    tc.max_steps, tc.batch_size, tc.device, tc.log_every, tc.eval_after = 3, 8, "cpu", 1, False
    tc.compile, tc.compile_backend = True, "aot_eager"
    model = build_model(cfg.model)
    run = RunDir.create(tmp_path / "run", cfg.to_dict())
    result = train(cfg, run, model=model, progress=False)

    assert result.step == 3
    events = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    start = next(e for e in events if e["kind"] == "start")
    assert start["compiled"] is True
    marks = start["startup"]
    assert list(marks) == ["train_called", "dataset_open", "model_built", "loader_built"]
    assert list(marks.values()) == sorted(marks.values()) and marks["loader_built"] <= start["time"]
    losses = [e["loss"] for e in events if e["kind"] == "train"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    # compiled in place and undone at the end: plain towers again, parameter names unchanged
    assert all(m._compiled_call_impl is None for m in model.modules())
    assert set(model.state_dict()) == set(build_model(cfg.model).state_dict())


class _HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the ops that read a tensor back to the host (on CUDA: a sync that stalls the launch queue)."""

    READS = ("aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.item")

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(self.READS) or (
            name.startswith("aten.index") and any(getattr(a, "dtype", None) == torch.bool for a in args[1:])
        ):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def _step_host_reads(image_mask: torch.Tensor) -> tuple[list[str], float]:
    from mmpt.data.device import to_device
    from mmpt.train.loop import _masks
    from mmpt.train.loss import ContrastiveLoss

    torch.manual_seed(0)
    model = build_model(preset_config("tiny")).train()
    x = tiny_inputs(B)
    batch = {
        "image": x["image"],
        "text": x["text"],
        "image_mask": image_mask,
        "text_mask": torch.ones(B, dtype=torch.bool),
    }
    batch = to_device(batch, torch.device("cpu"))
    loss_fn = ContrastiveLoss(["image_text"])
    with _HostReads() as reads:
        loss, _ = loss_fn(model(batch), _masks(batch), model.logit_scale, model.logit_bias)
        loss.backward()
    return reads.ops, float(loss.detach())


def test_a_full_batch_step_reads_nothing_back_to_the_host():
    """Rows that all hold every modality (known on the CPU before the copy) take no mask arithmetic: no
    host sync in the model or the loss; a batch with a missing image still takes the masked path."""
    full, full_loss = _step_host_reads(torch.ones(B, dtype=torch.bool))
    assert full == []
    partial, _ = _step_host_reads(torch.tensor([True, True, True, False]))
    assert partial  # the masked path reads the mask back (can fail: the check sees host reads)
    # the loss is the one the masked path computes with an all-True mask
    from mmpt.train.loss import ContrastiveLoss

    torch.manual_seed(0)
    model = build_model(preset_config("tiny")).train()
    x = tiny_inputs(B)
    ones = torch.ones(B, dtype=torch.bool)
    features = model({"image": x["image"], "text": x["text"], "image_mask": ones, "text_mask": ones})
    loss, _ = ContrastiveLoss(["image_text"])(
        features, {"image": ones, "text": ones}, model.logit_scale, model.logit_bias
    )
    assert float(loss.detach()) == full_loss  # bit-identical
