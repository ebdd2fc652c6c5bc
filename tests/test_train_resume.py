"""Run-level behaviour of `mmpt pretrain` as real subprocesses: kill -9 then --resume, SIGTERM, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmpt.models.checkpoint import load_model
from mmpt.runs import RunDir

# Small and quick: 4 rows per batch, a checkpoint every 3 steps, every step logged, no final eval.
BASE = [
    "--batch-size",
    "8",
    "--num-workers",
    "0",
    "--quiet",
    "--device",
    "cpu",
    "--set",
    "train.ckpt_every=3",
    "--set",
    "train.log_every=1",
    "--set",
    "train.eval_after=false",
    "--set",
    "train.val_every=4",
    "--set",
    "train.warmup_steps=2",
]
COMPARED = (
    "loss",
    "loss/image_text",
    "loss/audio_text",
    "loss/image_audio",
    "lr",
    "grad_norm",
    "logit_scale/image_text",
    "logit_scale/audio_text",
    "logit_scale/image_audio",
    "val_loss",
    "val_loss/image_text",
)


def mmpt(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mmpt", *args], capture_output=True, text=True, env=env, timeout=600, **kw
    )


def comparable(run: Path) -> list[tuple]:
    """The deterministic part of each train/val event (no timings, throughput or memory)."""
    out = []
    for e in RunDir(run).metrics():
        if e["kind"] in ("train", "val"):
            out.append((e["kind"], e["step"], e["epoch"], tuple(round(e.get(k, 0.0), 6) for k in COMPARED)))
    return out


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited early"
        events = RunDir(run).metrics("train") if (run / "metrics.jsonl").exists() else []
        if events and events[-1]["step"] >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"run did not reach step {step}")


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mmpt", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_kill9_then_resume_logs_the_same_metrics_as_an_uninterrupted_run(demo_dataset, tmp_path):
    data = str(demo_dataset.uri)
    steps = ["--max-steps", "10"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = mmpt("pretrain", "--data", data, "--run", str(straight), *steps, *BASE)
    assert done.returncode == 0, done.stderr

    proc = start(["pretrain", "--data", data, "--run", str(killed), *steps, *BASE])
    wait_for_step(killed, 7, proc)  # past the checkpoint at step 6, before the end
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert RunDir(killed).status()["state"] == "running"  # a hard kill leaves no chance to say otherwise
    assert RunDir(killed).latest_checkpoint().name == "step-0000006"

    resumed = mmpt("pretrain", "--resume", str(killed), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert RunDir(killed).status()["state"] == "finished"
    assert comparable(killed) == comparable(straight)
    assert [e["step"] for e in RunDir(killed).metrics("train")] == list(range(1, 11))


def test_sigterm_writes_a_loadable_checkpoint_and_the_run_resumes(demo_dataset, tmp_path):
    run = tmp_path / "run"
    proc = start(
        [
            "pretrain",
            "--data",
            str(demo_dataset.uri),
            "--run",
            str(run),
            "--max-steps",
            "50",
            *BASE,
            "--set",
            "train.ckpt_every=1000",
        ]
    )
    wait_for_step(run, 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    status = RunDir(run).status()
    assert status["state"] == "stopped"
    ckpt = RunDir(run).latest_checkpoint()
    assert ckpt is not None and int(ckpt.name.split("-")[1]) == status["step"] >= 2
    model = load_model(ckpt)
    assert set(model.modalities) == {"image", "text", "audio"}
    assert not list(run.joinpath("checkpoints").glob(".tmp-*"))

    resumed = mmpt("pretrain", "--resume", str(run), "--quiet", "--set", "train.max_steps=0")
    assert resumed.returncode == 0, resumed.stderr
    assert RunDir(run).status()["state"] == "finished"
    assert RunDir(run).metrics("train")[-1]["step"] == 50


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "cuda"], "CUDA requested but no GPU"),
        (["--batch-size", "100000"], "larger than"),
        (["--model", "no-such-model"], "unknown model"),
        (["--pairs", "image-video"], "unknown pair"),
        (["--set", "train.no_such_key=1"], "no key 'no_such_key'"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(demo_dataset, tmp_path, extra, message):
    args = [
        "pretrain",
        "--data",
        str(demo_dataset.uri),
        "--run",
        str(tmp_path / "r"),
        "--max-steps",
        "1",
        "--num-workers",
        "0",
        "--quiet",
        *extra,
    ]
    if "--device" not in extra:
        args += ["--device", "cpu"]
    res = mmpt(*args)
    assert res.returncode != 0
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and message.lower() in lines[-1].lower(), res.stderr
    assert "Traceback" not in res.stderr


def test_missing_modality_and_mismatched_resume_are_refused(demo_dataset, tmp_path):
    from mmpt.store.ingest import ingest

    # a text-only dataset: no audio (nor images) at all
    frame = demo_dataset.lance.to_table(columns=["id", "text", "label", "split"]).to_pandas().dropna()
    no_audio = tmp_path / "noaudio.lance"
    ingest(frame, out=no_audio, quiet=True)
    res = mmpt(
        "pretrain",
        "--data",
        str(no_audio),
        "--run",
        str(tmp_path / "r1"),
        "--max-steps",
        "1",
        "--device",
        "cpu",
        "--quiet",
    )
    assert res.returncode != 0 and "has no " in res.stderr.splitlines()[-1], res.stderr

    run = tmp_path / "r2"
    ok = mmpt("pretrain", "--data", str(demo_dataset.uri), "--run", str(run), "--max-steps", "3", *BASE)
    assert ok.returncode == 0, ok.stderr
    res = mmpt("pretrain", "--resume", str(run), "--model", "small")
    assert res.returncode != 0 and "was made with model" in res.stderr.splitlines()[-1]
    res = mmpt("pretrain", "--resume", str(run), "--data", str(no_audio))
    assert res.returncode != 0 and "was trained on" in res.stderr.splitlines()[-1]
    res = mmpt("pretrain", "--data", str(demo_dataset.uri), "--run", str(run), "--max-steps", "3", *BASE)
    assert res.returncode != 0 and "already holds a run" in res.stderr.splitlines()[-1]
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
