"""Real training: a 2-process torchrun (gloo) pretrain that trains and evaluates, and a tiny run that learns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmpt.runs import RunDir
from mmpt.train.pretrain import pretrain, resolve_config


@pytest.mark.parametrize("run_flag", [["--run-dir"], ["--", "--run"]], ids=["run-dir", "separator"])
def test_torchrun_two_processes_trains_and_evaluates(demo_dataset, tmp_path, run_flag):
    # torchrun's parser takes `--run` for its own --run-path option: spell it --run-dir, or put `--` first.
    run = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sep, flag = (run_flag[:-1], run_flag[-1])
    res = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "--standalone",  # a free port of its own: 29500 may still be held by an earlier run
            "-m",
            "mmpt",
            *sep,
            "pretrain",
            "--data",
            str(demo_dataset.uri),
            flag,
            str(run),
            "--device",
            "cpu",
            "--max-steps",
            "6",
            "--batch-size",
            "8",
            "--num-workers",
            "0",
            "--quiet",
            "--set",
            "train.log_every=1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rd = RunDir(run)
    assert rd.status()["state"] == "finished"
    start = rd.metrics("start")[0]
    assert start["world_size"] == 2
    train = rd.metrics("train")
    assert [e["step"] for e in train] == [1, 2, 3, 4, 5, 6]  # only rank 0 writes: no duplicated lines
    assert all(e["loss"] == e["loss"] for e in train)  # finite
    report = json.loads((run / "eval" / "final.json").read_text())
    assert "r@1" in report["retrieval"]["image_to_text"]
    assert "accuracy" in report["zero_shot"]["audio"]


def test_tiny_pretraining_learns_far_above_chance(demo_dataset, tmp_path):
    cfg = resolve_config(
        data=str(demo_dataset.uri),
        model="tiny",
        max_steps=120,
        batch_size=32,
        lr=2e-3,
        device="cpu",
        overrides=["train.warmup_steps=10", "train.log_every=20", "data.num_workers=0", "train.val_every=60"],
    )
    result = pretrain(cfg, tmp_path / "run", progress=False)
    report = json.loads((result.run.path / "eval" / "final.json").read_text())
    losses = [e["loss"] for e in result.run.metrics("train")]
    assert losses[-1] < 0.7 * losses[0]
    # 20 classes: chance is 0.05 for zero-shot accuracy and for label-match precision
    assert report["zero_shot"]["audio"]["accuracy"] > 0.3, report["zero_shot"]["audio"]
    assert report["label_match"]["audio_to_text"]["p@1"] > 0.3
    assert report["label_match"]["text_to_audio"]["p@1"] > 0.3
    assert len(result.run.metrics("val")) == 2
