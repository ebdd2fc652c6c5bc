"""Trimming caption padding before the open_clip text tower: same embeddings and gradients, shorter batches."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest
import torch
from open_clip.transformer import TextTransformer

from mmpt.data.loader import build_loader
from mmpt.models import ModelConfig, build_model, load_model, save_model
from mmpt.models.openclip_io import export_openclip, load_openclip_checkpoint
from mmpt.models.text_trim import TrimmableTextTransformer
from mmpt.models.tokenizer import build_tokenizer, trim_padding
from mmpt.store.synthetic import demo_row

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# fp32 on CPU: trimmed and full differ only by summation order; per tensor, max |diff| / max |full| measured
# <= 5e-7 for embeddings and gradients (a real difference, e.g. attended padding, is of order 1)
REL = 1e-5
EOS = {"pool_type": "eos", "eos_id": 49407}  # the CLIP BPE tokenizer's EOT id
NOT_EXACT = [
    {"no_causal_mask": True},
    {"pool_type": "last"},
    {"embed_cls": True},
    {"pool_type": "eos", "eos_id": 0},
]


def _config(modalities: list[str], **text_cfg: object) -> ModelConfig:
    cfg = ModelConfig(modalities=modalities)
    clip = copy.deepcopy(cfg.clip)
    clip["text_cfg"].update(text_cfg)
    return dataclasses.replace(cfg, clip=clip)


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """Equal up to float summation order: max |actual - expected| <= REL * max |expected|."""
    assert actual.shape == expected.shape, what
    diff, scale = (actual - expected).abs().max().item(), expected.abs().max().item()
    assert diff <= REL * scale, f"{what}: max |diff| {diff:.3g} vs scale {scale:.3g}"


def _captions() -> list[str]:
    """Demo captions of mixed lengths, a longer one, and an empty string (a row of only SOT/EOT)."""
    texts = [demo_row(i)["text"] or "" for i in range(12)]
    return [*texts, "a very small red circle drawn in the top left corner on a plain grey background", ""]


@pytest.mark.parametrize("text_cfg", [{}, EOS], ids=["argmax", "eos"])
def test_trimmed_tokens_give_the_same_embeddings_and_gradients(text_cfg):
    torch.manual_seed(0)
    model = build_model(_config(["text"], **text_cfg)).train()
    tower = model.clip.text
    assert type(tower) is TrimmableTextTransformer and isinstance(tower, TextTransformer)
    assert model.spec.trim_text
    full = build_tokenizer(model.spec)(_captions())
    full = torch.cat([full, torch.zeros(1, full.shape[1], dtype=torch.long)])  # a missing text: zeros
    short = trim_padding(full)
    assert full.shape == (15, 32) and short.shape == (15, 24)  # longest caption: 17 tokens with SOT/EOT
    weights = torch.randn(15, model.config.embed_dim)

    def run(tokens):
        tower.zero_grad()
        out = tower(tokens)
        (out * weights).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in tower.named_parameters()}

    out_full, grads_full = run(full)
    out_short, grads_short = run(short)
    _close(out_short, out_full, "embeddings")
    assert grads_short.keys() == grads_full.keys()
    for name, grad in grads_full.items():
        assert grad.abs().sum() > 0, name
        _close(grads_short[name], grad, name)
    # the rows past the longest caption get no gradient at full length either
    assert grads_full["positional_embedding"][short.shape[1] :].abs().max() == 0


@pytest.mark.parametrize("text_cfg", NOT_EXACT, ids=["bidirectional", "last", "cls", "eos-is-pad"])
def test_towers_where_trimming_changes_the_output_keep_full_length(text_cfg):
    model = build_model(_config(["text"], **text_cfg))
    assert type(model.clip.text) is TextTransformer
    assert not model.spec.trim_text
    tokens = build_tokenizer(model.spec, trim=True)(_captions())
    assert tokens.shape == (14, 32)


def test_trimming_would_change_a_bidirectional_tower():
    """Why the condition matters: without a causal mask the padding is attended to."""
    torch.manual_seed(0)
    tower = build_model(_config(["text"], no_causal_mask=True)).clip.text.eval()
    full = build_tokenizer(build_model(_config(["text"])).spec)(_captions())
    with torch.no_grad():
        assert not torch.allclose(tower(trim_padding(full)), tower(full), atol=1e-3)


def test_trim_padding_edge_cases():
    full = torch.arange(1, 25).reshape(3, 8)
    assert trim_padding(full) is full  # nothing to cut: the same tensor, no copy
    empty = torch.zeros(4, 32, dtype=torch.long)
    assert trim_padding(empty).shape == (4, 8)  # at least one column, rounded up
    assert trim_padding(empty, multiple=1).shape == (4, 1)
    assert trim_padding(torch.zeros(0, 32, dtype=torch.long)).shape == (0, 8)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[0, :10] = 5
    tokens[1, :3] = 7
    for multiple, kept in [(8, 16), (1, 10), (10, 10), (16, 16), (64, 64), (100, 77)]:
        out = trim_padding(tokens, multiple)
        assert out.shape == (2, kept) and out.is_contiguous() and torch.equal(out, tokens[:, :kept])
    tokens[1, 76] = 3  # a token in the last column: nothing can go
    assert trim_padding(tokens) is tokens
    with pytest.raises(ValueError, match="multiple"):
        trim_padding(tokens, 0)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        trim_padding(tokens[0])


def test_model_pickles_copies_saves_and_exports_unchanged(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    tokens = build_tokenizer(model.spec)(_captions())
    with torch.no_grad():
        expected = model.encode_text(tokens)
        for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert type(other.clip.text) is TrimmableTextTransformer
            _close(other.encode_text(trim_padding(tokens)), expected)
    assert all(k.startswith(("clip.", "audio.", "logit_")) for k in model.state_dict())
    loaded = load_model(save_model(model, tmp_path / "ckpt"))
    assert loaded.spec == model.spec and loaded.spec.trim_text
    weights, config = export_openclip(model, tmp_path / "oc.safetensors")
    back, names = load_openclip_checkpoint(weights, str(config), modalities=["image", "text", "audio"])
    back.eval()
    assert {k for k in model.state_dict() if k.startswith("clip.text.")} <= names
    assert back.spec.trim_text and type(back.clip.text) is TrimmableTextTransformer
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(tokens), expected)
        _close(back.encode_text(trim_padding(tokens)), expected)


def test_reader_batches_are_cut_to_the_rounded_longest_caption(demo_dataset):
    spec = build_model(ModelConfig(modalities=["text"])).spec
    assert spec.trim_text and spec.context_length == 32
    full_spec = dataclasses.replace(spec, trim_text=False)
    kw = {"modalities": ("text",), "split": "train", "batch_size": 16, "train": True, "seed": 3}
    lengths = set()
    with (
        build_loader(demo_dataset.uri, spec, **kw) as short,
        build_loader(demo_dataset.uri, full_spec, **kw) as full,
    ):
        for a, b in zip(short, full, strict=True):
            assert b["text"].shape == (16, 32)
            n = a["text"].shape[1]
            used = int(b["text"].ne(0).any(0).nonzero().max()) + 1
            assert n % 8 == 0 and used <= n < used + 8
            torch.testing.assert_close(a["text"], b["text"][:, :n])
            torch.testing.assert_close(a["text_mask"], b["text_mask"])
            lengths.add(n)
    assert lengths and max(lengths) < 32


def test_a_short_training_run_feeds_the_text_tower_trimmed_batches(demo_dataset, tmp_path, monkeypatch):
    from mmpt.train.pretrain import pretrain, resolve_config

    seen: list[int] = []
    embeds = TrimmableTextTransformer._embeds

    def record(self, text):
        seen.append(text.shape[1])
        return embeds(self, text)

    monkeypatch.setattr(TrimmableTextTransformer, "_embeds", record)
    cfg = resolve_config(
        data=str(demo_dataset.uri),
        model="tiny",
        max_steps=3,
        batch_size=16,
        device="cpu",
        seed=0,
        overrides=["data.num_workers=0", "train.log_every=1", "train.eval_after=false"],
    )
    run = pretrain(cfg, tmp_path / "run", progress=False).run.path
    losses = [
        e["loss"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in e
    ]
    assert len(losses) >= 3 and all(torch.isfinite(torch.tensor(losses)))
    assert seen and max(seen) < 32 and all(n % 8 == 0 for n in seen)
