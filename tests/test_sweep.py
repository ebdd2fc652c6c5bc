"""`mmpt sweep`: grid / random plans, real fine-tune jobs one after another, a ranked results table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config, save_model
from mmpt.train.sweep import format_results, parse_grid, plan_jobs


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(build_model(preset_config("tiny")), tmp_path_factory.mktemp("sweep") / "random")


def test_grid_and_random_plans():
    grid = parse_grid(["lr=1e-4,3e-4", "freeze=none,image+text", "wd=0.1"])
    jobs = plan_jobs(grid)
    assert [j.params for j in jobs] == [
        {"lr": "1e-4", "freeze": "none", "weight_decay": "0.1"},
        {"lr": "1e-4", "freeze": "image+text", "weight_decay": "0.1"},
        {"lr": "3e-4", "freeze": "none", "weight_decay": "0.1"},
        {"lr": "3e-4", "freeze": "image+text", "weight_decay": "0.1"},
    ]
    assert jobs[1].name == "01-lr1e-4-freezeimage+text-weight_decay0.1"
    sampled = plan_jobs(parse_grid(["lr=1e-5:1e-3", "freeze=none,text"]), random_n=5, seed=3)
    assert len(sampled) == 5 and all(1e-5 <= float(j.params["lr"]) <= 1e-3 for j in sampled)
    assert sampled == plan_jobs(parse_grid(["lr=1e-5:1e-3", "freeze=none,text"]), random_n=5, seed=3)


def test_bad_grids_are_one_line_errors():
    with pytest.raises(ConfigError, match="cannot sweep 'momentum'"):
        parse_grid(["momentum=0.9"])
    with pytest.raises(ConfigError, match="bad --grid value lr='fast'"):
        parse_grid(["lr=fast"])
    with pytest.raises(ConfigError, match="need --random N"):
        plan_jobs(parse_grid(["lr=1e-5:1e-3"]))
    with pytest.raises(ConfigError, match="nothing to sweep"):
        parse_grid([])


def test_sweep_cli_runs_each_job_and_marks_the_best(source, demo_dataset, tmp_path):
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "mmpt",
        "sweep",
        "--from",
        str(source),
        "--data",
        str(demo_dataset.uri),
        "--out",
        str(out),
        "--grid",
        "lr=1e-4,2e-3",
        "--grid",
        "freeze=text",
        "--max-steps",
        "3",
        "--batch-size",
        "32",
        "--num-workers",
        "0",
        "--early-stop",
        "none",
        "--metric",
        "zero_shot.audio.accuracy",
        "--set",
        "train.warmup_steps=1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert [j["status"] for j in results["jobs"]] == ["ok", "ok"]
    values = {j["name"]: j["metric"] for j in results["jobs"]}
    assert results["best"] == max(values, key=values.get)
    for job in results["jobs"]:  # each job is a complete fine-tune run with the job's settings
        config = (out / job["name"] / "config.toml").read_text()
        assert (
            f"lr = {float(job['params']['lr'])}" in config
            and (out / job["name"] / "eval" / "final.json").is_file()
        )
    lines = proc.stdout.splitlines()
    best_line = next(line for line in lines if line.startswith("*"))
    assert results["best"] in best_line and f"best: {results['best']}" in proc.stdout
    assert format_results(results).splitlines()[0].split()[:3] == ["job", "lr", "freeze"]


def test_sweep_jobs_as_processes_and_failures_recorded(source, demo_dataset, tmp_path):
    from mmpt.train.finetune import resolve_finetune_config
    from mmpt.train.sweep import run_sweep

    base = resolve_finetune_config(
        source=str(source),
        data=str(demo_dataset.uri),
        max_steps=2,
        batch_size=32,
        overrides=["data.num_workers=0", "train.early_stop_metric=''"],
    )
    jobs = plan_jobs(parse_grid(["freeze=none,image+text+audio+heads"]))
    results = run_sweep(base, tmp_path / "p", jobs, processes=True, echo=lambda s: None)
    ok, failed = results["jobs"]
    assert ok["status"] == "ok" and ok["metric"] is not None and results["best"] == ok["name"]
    assert failed["status"] == "failed" and "leaves nothing to train" in failed["error"]
    with pytest.raises(ConfigError, match="already holds a sweep"):
        run_sweep(base, tmp_path / "p", jobs)
