"""Pairwise contrastive loss: hand-computed InfoNCE, open_clip's losses as reference, masking per pair."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss
from torch import nn

from mmpt.errors import ConfigError
from mmpt.models import ModelConfig, build_model
from mmpt.train.loss import ContrastiveLoss, canonical_pair, parse_pairs

PAIRS = ("image_text", "audio_text", "image_audio")
B, D = 7, 16
LOG10 = math.log(10.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _heads(scale: float = LOG10, bias: float = -3.0):
    logit_scale = nn.ParameterDict(
        {p: nn.Parameter(torch.tensor(scale + i * 0.1)) for i, p in enumerate(PAIRS)}
    )
    logit_bias = nn.ParameterDict({p: nn.Parameter(torch.tensor(bias - i)) for i, p in enumerate(PAIRS)})
    return logit_scale, logit_bias


def _features(seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return {
        m: F.normalize(torch.randn(B, D, generator=g), dim=-1).requires_grad_(requires_grad)
        for m in ("image", "text", "audio")
    }


MASKS = {  # row 2 lacks image, row 4 lacks text, rows 5-6 lack audio
    "image": torch.tensor([1, 1, 0, 1, 1, 1, 1], dtype=torch.bool),
    "text": torch.tensor([1, 1, 1, 1, 0, 1, 1], dtype=torch.bool),
    "audio": torch.tensor([1, 1, 1, 1, 1, 0, 0], dtype=torch.bool),
}


def _hand_infonce(a, b, scale):
    """Symmetric InfoNCE with explicit sums: mean over rows of -log softmax of the matching column."""
    n = len(a)
    sim = [[scale * float(a[i] @ b[j]) for j in range(n)] for i in range(n)]
    a2b = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(n))) for i in range(n)) / n
    b2a = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(n))) for j in range(n)) / n
    return (a2b + b2a) / 2


def test_clip_loss_equals_hand_computed_infonce():
    feats = _features()
    scale, bias = _heads()
    total, per_pair = ContrastiveLoss(["image_text"])(feats, {}, scale, bias)
    expected = _hand_infonce(feats["image"], feats["text"], math.exp(scale["image_text"].item()))
    assert per_pair["image_text"].item() == pytest.approx(expected, rel=1e-5)
    assert total.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_each_pair_equals_open_clip_on_its_valid_rows(kind):
    feats = _features(1, requires_grad=True)
    scale, bias = _heads()
    weights = {"image-text": 1.0, "text-audio": 0.5, "image_audio": 2.0}
    total, per_pair = ContrastiveLoss(PAIRS, weights, kind)(feats, MASKS, scale, bias)

    ref_feats = {m: f.detach().clone().requires_grad_(True) for m, f in feats.items()}
    ref_scale, ref_bias = _heads()
    ref_total = 0.0
    valid_rows = {"image_text": [0, 1, 3, 5, 6], "audio_text": [0, 1, 2, 3], "image_audio": [0, 1, 3, 4]}
    for pair, w in zip(PAIRS, (1.0, 0.5, 2.0), strict=True):
        a, b = pair.split("_")
        rows = torch.tensor(valid_rows[pair])
        assert torch.equal((MASKS[a] & MASKS[b]).nonzero().squeeze(1), rows)
        fa, fb = ref_feats[a][rows], ref_feats[b][rows]
        s = ref_scale[pair].exp()
        ref = ClipLoss()(fa, fb, s) if kind == "clip" else SigLipLoss()(fa, fb, s, ref_bias[pair])
        assert per_pair[pair].item() == pytest.approx(ref.item(), rel=1e-5)
        assert not per_pair[pair].requires_grad
        ref_total = ref_total + w * ref
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-5)

    total.backward()
    ref_total.backward()
    for m in feats:
        torch.testing.assert_close(feats[m].grad, ref_feats[m].grad, atol=1e-6, rtol=1e-5)
    for p in PAIRS:
        torch.testing.assert_close(scale[p].grad, ref_scale[p].grad, atol=1e-6, rtol=1e-5)
        if kind == "siglip":
            torch.testing.assert_close(bias[p].grad, ref_bias[p].grad, atol=1e-6, rtol=1e-5)
        else:
            assert bias[p].grad is None  # the clip loss has no bias


def test_missing_modality_masks_only_its_pairs():
    feats = _features(2)
    scale, bias = _heads()
    loss = ContrastiveLoss(PAIRS)
    _, before = loss(feats, MASKS, scale, bias)
    # Change the image of row 2 (masked out of image pairs) and the audio of row 6 (masked out of audio pairs).
    changed = {m: f.clone() for m, f in feats.items()}
    changed["image"][2] = F.normalize(torch.randn(D), dim=0)
    changed["audio"][6] = F.normalize(torch.randn(D), dim=0)
    _, after = loss(changed, MASKS, scale, bias)
    for p in PAIRS:
        assert after[p].item() == before[p].item()
    # Row 2 still counts for audio-text: changing its text changes that pair and image-text not at all.
    changed["text"][2] = F.normalize(torch.randn(D), dim=0)
    _, after = loss(changed, MASKS, scale, bias)
    assert after["audio_text"].item() != before["audio_text"].item()
    assert after["image_text"].item() == before["image_text"].item()


def test_pairs_with_fewer_than_two_rows_add_nothing():
    feats = _features(3, requires_grad=True)
    scale, bias = _heads()
    masks = {**MASKS, "audio": torch.tensor([0, 0, 0, 1, 0, 0, 0], dtype=torch.bool)}
    total, per_pair = ContrastiveLoss(PAIRS)(feats, masks, scale, bias)
    assert set(per_pair) == {"image_text"}
    assert total.item() == pytest.approx(per_pair["image_text"].item())
    total.backward()
    assert feats["audio"].grad is None and scale["audio_text"].grad is None
    feats = _features(3, requires_grad=True)
    nothing, none = ContrastiveLoss(PAIRS)(
        feats, {m: torch.zeros(B, dtype=torch.bool) for m in feats}, scale, bias
    )
    assert none == {} and nothing.item() == 0.0
    nothing.backward()  # a batch with no usable pair still makes a (zero-gradient) training step
    assert feats["image"].grad.abs().sum() == 0


def test_logit_scale_is_clamped_at_max():
    feats = _features(4)
    scale, bias = _heads(scale=math.log(1000.0))
    clamped, _ = ContrastiveLoss(["image_text"], max_logit_scale=math.log(100))(feats, {}, scale, bias)
    expected = ClipLoss()(feats["image"], feats["text"], torch.tensor(100.0))
    assert clamped.item() == pytest.approx(expected.item(), rel=1e-5)


def test_pair_names_and_weights():
    assert parse_pairs("image-text, text-audio,audio-image") == list(PAIRS)
    assert parse_pairs("all") == list(PAIRS) and parse_pairs(["text_image"]) == ["image_text"]
    assert canonical_pair("audio-text") == "audio_text"
    for bad in ("image-video", "image-image", ""):
        with pytest.raises(ConfigError):
            parse_pairs(bad)
    with pytest.raises(ConfigError, match="not trained"):
        ContrastiveLoss(["image_text"], {"audio-text": 1.0})
    with pytest.raises(ConfigError, match="unknown loss"):
        ContrastiveLoss(kind="triplet")


def test_model_masked_rows_do_not_affect_other_pairs():
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    spec = model.spec
    g = torch.Generator().manual_seed(0)
    n = 4
    batch = {
        "image": torch.randn(n, 3, spec.image_size, spec.image_size, generator=g),
        "text": torch.randint(0, 49408, (n, spec.context_length), generator=g),
        "audio": 0.1 * torch.randn(n, spec.clip_samples, generator=g),
        "image_mask": torch.tensor([1, 1, 0, 1], dtype=torch.bool),
        "text_mask": torch.ones(n, dtype=torch.bool),
        "audio_mask": torch.tensor([1, 1, 1, 0], dtype=torch.bool),
    }
    masks = {m: batch[f"{m}_mask"] for m in ("image", "text", "audio")}
    loss = ContrastiveLoss(PAIRS)
    with torch.no_grad():
        feats = model(batch)
        total, per_pair = loss(feats, masks, model)  # the model itself may stand in for its heads
        other = {**batch, "image": batch["image"].clone(), "audio": batch["audio"].clone()}
        other["image"][2] = torch.rand(3, spec.image_size, spec.image_size)  # masked-out image
        other["audio"][3] = torch.randn(spec.clip_samples)  # masked-out audio
        feats2 = model(other)
        total2, per_pair2 = loss(feats2, masks, model.logit_scale, model.logit_bias)
    for m in feats:
        assert torch.equal(feats[m], feats2[m])
    assert total.item() == total2.item() and per_pair == per_pair2
    assert feats["image"][2].abs().sum() == 0 and feats["audio"][3].abs().sum() == 0
