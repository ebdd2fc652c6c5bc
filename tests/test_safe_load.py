"""Weights are read without running pickled code: safetensors, or torch.load(weights_only=True)."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from mmpt.errors import ConfigError
from mmpt.models.safe_load import load_into, load_tensors


class _CreatesFile:
    """Unpickling this object runs os.system and would create `path`."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_torch_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _CreatesFile(str(marker))}, ckpt)
    assert not marker.exists()  # saving does not run it
    with pytest.raises(
        ConfigError, match=r"refusing to load .*evil\.pt: it contains pickled code .*posix\.system"
    ):
        load_tensors(ckpt)
    assert not marker.exists()


def test_malicious_plain_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.bin"
    with ckpt.open("wb") as f:
        pickle.dump({"payload": _CreatesFile(str(marker))}, f, protocol=2)
    with pytest.raises(ConfigError, match="refusing to load .*only safetensors or tensor-only checkpoints"):
        load_tensors(ckpt)
    assert not marker.exists()


def test_tensor_only_files_load_with_prefix_and_wrapper_removed(tmp_path):
    state = {"a.weight": torch.randn(3, 2), "b": torch.arange(4)}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        got = load_tensors(tmp_path / name)
        assert set(got) == set(state)
        assert all(torch.equal(got[k], state[k]) for k in state)


def test_unreadable_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="no weights file"):
        load_tensors(tmp_path / "missing.pt")
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(ConfigError, match="expected a .safetensors"):
        load_tensors(tmp_path / "weights.npz")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ConfigError, match="cannot read .* as safetensors"):
        load_tensors(tmp_path / "junk.safetensors")
    torch.save({"epoch": 1, "note": "no tensors"}, tmp_path / "meta.pt")
    with pytest.raises(ConfigError, match="holds no state dict of tensors"):
        load_tensors(tmp_path / "meta.pt")


def test_load_into_names_mismatched_missing_and_unexpected_tensors():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    good = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    assert load_into(model, good, "src") == set(good)
    assert torch.equal(model[0].weight, torch.ones(3, 2))
    with pytest.raises(ConfigError, match=r"shapes differ for 0\.weight \(4, 2\) vs model \(3, 2\)"):
        load_into(model, {**good, "0.weight": torch.zeros(4, 2)}, "src")
    partial = {k: v for k, v in good.items() if not k.startswith("1.")}
    with pytest.raises(ConfigError, match=r"missing 1\.weight, 1\.bias"):
        load_into(model, partial, "src")
    assert load_into(model, partial, "src", may_miss=("1.",)) == set(partial)
    with pytest.raises(ConfigError, match="unexpected extra"):
        load_into(model, {**good, "extra": torch.zeros(1)}, "src")
