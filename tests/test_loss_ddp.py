"""Two real gloo processes under DistributedDataParallel give the single-process loss and gradients."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from mmpt.errors import ConfigError
from mmpt.models import AudioConfig, ModelConfig, build_model
from mmpt.train import distributed as D
from mmpt.train.loss import ContrastiveLoss

PAIRS = ["image_text", "audio_text", "image_audio"]
WORLD = 2
# Global batch of 8, rank 0 takes rows 0-3, rank 1 rows 4-7. Valid rows per pair and rank differ.
# "dense": image-text 3 | 0, audio-text 2 | 3, image-audio 3 | 1; each rank holds every modality somewhere.
# "sparse": rank 1 has no audio at all, so its audio tower is not run (needs find_unused_parameters).
MASKS = {
    "dense": {
        "image": [1, 1, 1, 1, 1, 0, 0, 0],
        "text": [1, 1, 1, 0, 0, 1, 1, 1],
        "audio": [1, 0, 1, 1, 1, 1, 1, 1],
    },
    "sparse": {
        "image": [1, 1, 0, 1, 1, 1, 0, 1],
        "text": [1, 1, 1, 1, 0, 1, 1, 1],
        "audio": [1, 0, 1, 1, 0, 0, 0, 0],
    },
}
MODALITIES = ("image", "text", "audio")
# (masks, find_unused_parameters): the loop uses True; False checks every parameter gets a gradient.
CASES = [("dense", False), ("dense", True), ("sparse", True)]
KINDS = ("clip", "siglip")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _global_batch(spec, masks: str) -> dict:
    g = torch.Generator().manual_seed(0)
    n = 8
    batch = {
        "image": torch.randn(n, 3, spec.image_size, spec.image_size, generator=g),
        "text": torch.randint(0, 49408, (n, spec.context_length), generator=g),
        "audio": 0.1 * torch.randn(n, spec.clip_samples, generator=g),
    }
    batch.update({f"{m}_mask": torch.tensor(v, dtype=torch.bool) for m, v in MASKS[masks].items()})
    return batch


def _model() -> nn.Module:
    """A smaller-than-tiny model (same tower types) to keep the two spawned processes quick."""
    torch.manual_seed(0)
    clip = {
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    }
    return build_model(
        ModelConfig(embed_dim=32, clip=clip, audio=AudioConfig(clip_seconds=0.5, width=32, depth=1, heads=2))
    )


def _step(net: nn.Module, model: nn.Module, batch: dict, kind: str) -> dict:
    """One forward/backward; returns the loss, per-pair losses and every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    masks = {m: batch[f"{m}_mask"] for m in MODALITIES}
    loss_fn = ContrastiveLoss(PAIRS, {"audio_text": 0.5}, kind)
    total, per_pair = loss_fn(net(batch), masks, model.logit_scale, model.logit_bias)
    total.backward()
    grads = {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }
    return {"total": total.detach(), "per_pair": per_pair, "grads": grads}


def _feature_grads(kind: str, rows: slice | None) -> dict:
    """Loss gradients w.r.t. raw features (ranks may hold unequal row counts: 3 | 5)."""
    g = torch.Generator().manual_seed(1)
    feats = {m: F.normalize(torch.randn(8, 12, generator=g), dim=-1) for m in MODALITIES}
    masks = {m: torch.tensor(v, dtype=torch.bool) for m, v in MASKS["dense"].items()}
    if rows is not None:
        feats, masks = {m: f[rows] for m, f in feats.items()}, {m: k[rows] for m, k in masks.items()}
    feats = {m: f.clone().requires_grad_(True) for m, f in feats.items()}
    scale = nn.ParameterDict({p: nn.Parameter(torch.tensor(2.0)) for p in PAIRS})
    bias = nn.ParameterDict({p: nn.Parameter(torch.tensor(-4.0)) for p in PAIRS})
    total, _ = ContrastiveLoss(PAIRS, None, kind)(feats, masks, scale, bias)
    total.backward()
    return {
        "total": total.detach(),
        **{m: f.grad for m, f in feats.items()},
        "scale": torch.stack([scale[p].grad for p in PAIRS]),
    }


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
    )
    info = D.setup_distributed("cpu")
    assert (info.rank, info.world_size, info.device.type) == (rank, WORLD, "cpu")
    try:
        results = {}
        for masks, find_unused in CASES:
            model = _model()
            net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)
            local = {k: v[4 * rank : 4 * rank + 4] for k, v in _global_batch(model.spec, masks).items()}
            for kind in KINDS:
                results[(masks, find_unused, kind)] = _step(net, model, local, kind)
        uneven = slice(0, 3) if rank == 0 else slice(3, 8)
        results["features"] = {kind: _feature_grads(kind, uneven) for kind in KINDS}
        rows = torch.arange(6.0).view(3, 2) if rank == 0 else 10 + torch.arange(10.0).view(5, 2)
        rows.requires_grad_(True)
        gathered = D.gather_with_grad(rows)
        (gathered**2).sum().backward()
        results["helpers"] = {
            "gathered": gathered.detach(),
            "grad": rows.grad,
            "sum": D.all_reduce_sum(torch.tensor([rank + 1.0])),
        }
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        D.barrier()
    finally:
        D.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("masks", "find_unused"), CASES)
def test_ddp_loss_and_gradients_match_single_process(ddp_results, masks, find_unused, kind):
    assert not dist.is_initialized()
    model = _model()
    ref = _step(model, model, _global_batch(model.spec, masks), kind)
    assert set(ref["per_pair"]) == set(PAIRS)
    for res in ddp_results:
        r = res[(masks, find_unused, kind)]
        torch.testing.assert_close(r["total"], ref["total"], atol=1e-5, rtol=1e-5)
        for p in PAIRS:
            torch.testing.assert_close(r["per_pair"][p], ref["per_pair"][p], atol=1e-5, rtol=1e-5)
        assert r["grads"].keys() == ref["grads"].keys()
        for name, g in ref["grads"].items():
            torch.testing.assert_close(r["grads"][name], g, atol=1e-5, rtol=1e-4, msg=name)
    assert any(g.abs().sum() > 0 for n, g in ref["grads"].items() if n.startswith("audio."))


@pytest.mark.parametrize("kind", KINDS)
def test_uneven_rows_per_rank_give_single_process_feature_gradients(ddp_results, kind):
    ref = _feature_grads(kind, None)
    r0, r1 = (res["features"][kind] for res in ddp_results)
    for r in (r0, r1):
        torch.testing.assert_close(r["total"], ref["total"], atol=1e-6, rtol=1e-5)
    for m in MODALITIES:  # each rank's feature grad is WORLD x its rows' share (DDP then averages params)
        torch.testing.assert_close(torch.cat([r0[m], r1[m]]) / WORLD, ref[m], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close((r0["scale"] + r1["scale"]) / WORLD, ref["scale"], atol=1e-6, rtol=1e-5)


def test_collective_helpers(ddp_results):
    expected = torch.cat([torch.arange(6.0).view(3, 2), 10 + torch.arange(10.0).view(5, 2)])
    for rank, res in enumerate(ddp_results):
        h = res["helpers"]
        assert torch.equal(h["gathered"], expected) and h["sum"].item() == 3.0
        mine = expected[:3] if rank == 0 else expected[3:]
        torch.testing.assert_close(h["grad"], 2 * WORLD * mine)  # both ranks' losses reach this rank's rows


def test_setup_distributed_single_process_and_cuda_error(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = D.setup_distributed("cpu")
    assert (info.rank, info.world_size, info.distributed) == (0, 1, False) and not dist.is_initialized()
    assert D.is_main() and D.gather_with_grad(torch.ones(2)).shape == (2,)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA requested but no GPU is available"):
        D.setup_distributed("cuda")
