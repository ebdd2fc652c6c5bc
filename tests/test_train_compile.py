"""Regional compilation (mmpt.train.compile): which blocks a tower repeats, compiling them once for every
copy, the same outputs and gradients as eager, the whole-tower fallback and undoing it all."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config
from mmpt.models.config import ModelConfig
from mmpt.train.compile import compile_towers, repeated_blocks
from mmpt.train.config import RunConfig, TrainConfig, apply_overrides
from tests.model_support import tiny_inputs

B = 4


def _tiny(depth: int = 2) -> ModelConfig:
    d = preset_config("tiny").to_dict()
    d["clip"]["vision_cfg"]["layers"] = depth
    d["clip"]["text_cfg"]["layers"] = depth
    d["audio"]["depth"] = depth
    return ModelConfig.from_dict(d)


def _towers(model: nn.Module) -> list[nn.Module]:
    return [model.tower(m) for m in ("image", "text", "audio")]


def _features_and_grads(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    feats = model(tiny_inputs(B))
    sum(f.square().sum() for f in feats.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {m: f.detach() for m, f in feats.items()}, grads


def test_repeated_blocks_of_each_tower_kind():
    model = build_model(_tiny(depth=3))
    image, text, audio = _towers(model)
    assert repeated_blocks(image) == list(image.transformer.resblocks)
    assert repeated_blocks(text) == list(text.transformer.resblocks)  # the vocabulary table is not counted
    assert repeated_blocks(audio) == list(audio.vit.blocks)
    assert repeated_blocks(build_model(_tiny(depth=1)).tower("audio")) == []  # one block: nothing repeats

    class Stages(nn.Module):  # a ResNet-like tower: two stages of different blocks, neither holding most
        def __init__(self) -> None:
            super().__init__()
            self.stage1 = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
            self.stage2 = nn.Sequential(nn.Conv1d(8, 8, 3), nn.Conv1d(8, 8, 3))
            self.head = nn.Linear(8, 64)

    assert repeated_blocks(Stages()) == []


def test_blocks_compile_once_whatever_the_depth():
    """Every copy of a block reuses one compiled graph: what dynamo traces does not grow with depth (whole
    towers: it does)."""
    graphs, traced = {}, {}
    for depth in (2, 4):
        torch._dynamo.reset()
        counters.clear()
        model = build_model(_tiny(depth)).train()
        undo = compile_towers(_towers(model), backend="aot_eager", scope="blocks")
        _features_and_grads(model)
        graphs[depth], traced[depth] = counters["stats"]["unique_graphs"], counters["stats"]["calls_captured"]
        undo()
    assert graphs[2] == graphs[4] == 3  # one per block kind: open_clip image, open_clip text, timm audio
    assert traced[2] == traced[4] > 0


@pytest.mark.parametrize("scope", ["blocks", "towers"])
def test_compiled_towers_match_eager_and_undo(scope):
    torch.manual_seed(0)
    model = build_model(_tiny()).train()
    eager_feats, eager_grads = _features_and_grads(model)
    torch._dynamo.reset()
    undo = compile_towers(_towers(model), backend="aot_eager", scope=scope)
    compiled = [m for m in model.modules() if m._compiled_call_impl is not None]
    image, text, audio = _towers(model)
    if scope == "blocks":
        assert compiled == [*image.transformer.resblocks, *text.transformer.resblocks, *audio.vit.blocks]
    else:
        assert compiled == [image, text, audio.vit]  # the audio tower keeps its log-mel front end eager
    feats, grads = _features_and_grads(model)
    for m in eager_feats:
        torch.testing.assert_close(feats[m], eager_feats[m], rtol=1e-5, atol=1e-6)
    assert grads.keys() == eager_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], rtol=1e-4, atol=1e-6)
    undo()
    assert all(m._compiled_call_impl is None for m in model.modules())


def test_compile_scope_setting():
    assert TrainConfig().compile_scope == "blocks"
    assert apply_overrides(RunConfig(), ["train.compile_scope=towers"]).train.compile_scope == "towers"
    with pytest.raises(ConfigError, match="train.compile_scope must be one of blocks, towers"):
        TrainConfig(compile_scope="layers")
