"""`mmpt sweep` on Optuna: the search space (--grid lists and ranges, a TOML file), a persistent study that a
killed sweep resumes, pruning of trials whose validation loss falls behind, trials as parallel processes, and
the results table / results.json with the best trial marked."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmpt.errors import ConfigError
from mmpt.models import build_model, preset_config, save_model
from mmpt.train.config import RunConfig
from mmpt.train.sweep import (
    format_results,
    grid_size,
    load_space,
    parse_grid,
    search_space,
    suggest,
    trial_config,
    trial_name,
)
from mmpt.train.sweep_study import SweepOptions, resolve_options, run_sweep

MAX_STEPS = 4


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(build_model(preset_config("tiny")), tmp_path_factory.mktemp("sweep") / "random")


# ---- the search space ---------------------------------------------------------------------------------------


def test_grid_flags_and_toml_file_make_the_search_space(tmp_path):
    space = parse_grid(
        ["lr=1e-5:1e-2", "freeze=none,image+text", "wd=0.01,0.1", "epochs=1:4", "train.seed=3"]
    )
    assert list(space) == ["lr", "freeze", "weight_decay", "epochs", "train.seed"]
    lr, epochs = space["lr"], space["epochs"]
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-5, 1e-2, True, False)  # lr ranges are log-uniform
    assert (epochs.low, epochs.high, epochs.log, epochs.integer) == (1.0, 4.0, False, True)
    assert space["freeze"].values == ["none", "image+text"] and not space["freeze"].is_range

    toml = tmp_path / "space.toml"
    toml.write_text(
        'lr = {low = 1e-4, high = 1e-3, log = false}\nfreeze = ["text", "none"]\n'
        "warmup_steps = {low = 0, high = 20, step = 5}\n"
    )
    from_file = load_space(toml)
    assert from_file["lr"].log is False and from_file["warmup_steps"].step == 5
    merged = search_space(["freeze=image"], toml)  # a flag replaces the file's entry of that name
    assert merged["freeze"].values == ["image"] and merged["lr"].low == 1e-4
    assert grid_size(parse_grid(["lr=1e-4,3e-4", "freeze=none,text,image"])) == 6

    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        params = suggest(study.ask(), merged)
        assert 1e-4 <= params["lr"] <= 1e-3 and params["freeze"] == "image"
        assert params["warmup_steps"] in (0, 5, 10, 15, 20)

    base = RunConfig.from_dict({"finetune": {"source": "x"}})
    cfg = trial_config(base, {"lr": 3e-4, "freeze": "image+text", "epochs": 2, "train.seed": "3"})
    assert (cfg.train.lr, cfg.finetune.freeze, cfg.train.epochs, cfg.train.seed) == (
        3e-4,
        ["image", "text"],
        2,
        3,
    )
    assert trial_name(3, {"lr": 0.000316227, "freeze": "image+text"}) == "03-lr0.000316-freezeimage+text"


def test_bad_search_spaces_are_one_line_errors(tmp_path):
    cases = [
        (["momentum=0.9"], "cannot sweep 'momentum'"),
        (["train.momentum=0.9"], r"cannot sweep 'train.momentum': \[train\] has no field 'momentum'"),
        (["lr=fast"], "bad --grid value lr='fast'"),
        (["lr=1e-3:1e-4"], "bad range for lr: 0.001:0.0001"),
        (["lr=1e-4:1e-3,1e-2"], "a range is one LOW:HIGH"),
        (["freeze=none:text"], "freeze takes listed values, not a range"),
        (["lr"], "bad --grid 'lr': expected NAME=V1,V2"),
        (["train.pairs=image-text"], "only single-value settings"),
        ([], "nothing to sweep"),
    ]
    for grid, message in cases:
        with pytest.raises(ConfigError, match=message):
            search_space(grid)
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = {low = 1e-4}\n")
    with pytest.raises(ConfigError, match="lr must be a list of values or"):
        load_space(bad)
    with pytest.raises(ConfigError, match="search space file not found"):
        load_space(tmp_path / "missing.toml")
    base = RunConfig.from_dict({"finetune": {"source": "x"}})
    ranged = parse_grid(["lr=1e-5:1e-3"])
    with pytest.raises(ConfigError, match="cannot be walked as a grid"):
        resolve_options(SweepOptions(sampler="grid"), ranged, base)
    with pytest.raises(ConfigError, match="pass --trials N for the tpe sampler"):
        resolve_options(SweepOptions(), ranged, base)
    lists = parse_grid(["lr=1e-4,3e-4", "wd=0,0.1"])
    walked = resolve_options(SweepOptions(), lists, base)  # only value lists and no count: the whole grid
    assert (walked.sampler, walked.trials, walked.mode, walked.prune_metric) == ("grid", 4, "max", "val_loss")


# ---- sweeps that train ------------------------------------------------------------------------------------------


def _results(out):
    return json.loads((out / "results.json").read_text())


def _events(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _wait_for(predicate, proc, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_six_trials_prune_resume_after_a_kill_and_mark_the_best(source, demo_dataset, tmp_path):
    import optuna

    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "mmpt", "sweep", "--from", str(source), "--data", str(demo_dataset.uri)]
    cmd += ["--out", str(out), "--max-steps", str(MAX_STEPS)]
    cmd += (
        "--grid lr=1e-6,1e-2,1e-1 --grid wd=0.01,0.1 --metric val_loss --pruner median --prune-after 2 "
        "--batch-size 32 --num-workers 0 --patience 0 --set train.val_every=1 --set train.warmup_steps=1 "
        "--set train.eval_after=false"
    ).split()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        # kill -9 the driver while its second trial trains (after that trial's first validation)
        def one_done():
            return (out / "results.json").is_file() and len(_results(out)["jobs"]) >= 1

        def second_validated():
            return any('"kind": "val"' in m.read_text() for m in out.glob("01-*/metrics.jsonl"))

        _wait_for(one_done, first, "a trial was done")
        _wait_for(second_validated, first, "the second trial validated")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        log.close()
    storage = f"sqlite:///{out / 'study.db'}"
    killed = optuna.load_study(study_name="mmpt-sweep", storage=storage).get_trials(deepcopy=False)
    running = [t.user_attrs["name"] for t in killed if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1 and running[0].startswith("01-")
    kept = {
        t.user_attrs["name"]: (out / t.user_attrs["name"] / "metrics.jsonl").read_bytes() for t in killed[:1]
    }

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"trial {running[0]} was interrupted: it runs again with the same settings" in again.stdout

    results = _results(out)
    jobs = {j["name"]: j for j in results["jobs"]}
    statuses = [j["status"] for j in results["jobs"]]
    assert statuses.count("ok") + statuses.count("pruned") == 6 and statuses.count("interrupted") == 1
    assert jobs[running[0]]["status"] == "interrupted"
    retry = [j for j in results["jobs"][2:] if j["params"] == jobs[running[0]]["params"]]
    assert len(retry) == 1 and retry[0]["status"] in ("ok", "pruned")  # run again with the same settings
    for name, metrics in kept.items():  # the trials done before the kill are not run again
        assert (out / name / "metrics.jsonl").read_bytes() == metrics and jobs[name]["status"] in (
            "ok",
            "pruned",
        )
    combos = {tuple(sorted(j["params"].items())) for j in results["jobs"] if j["status"] != "interrupted"}
    assert len(combos) == 6  # the whole grid, each point once

    pruned = [j for j in results["jobs"] if j["status"] == "pruned"]
    assert pruned, again.stdout
    for j in pruned:  # stopped early: before the last step, at the validation the pruner judged
        steps = [e["step"] for e in _events(out / j["name"])]
        assert max(steps) < MAX_STEPS and j["pruned_step"] < MAX_STEPS and j["metric"] is None
    ok = {j["name"]: j["metric"] for j in results["jobs"] if j["status"] == "ok"}
    assert len(ok) >= 2 and results["best"] == min(ok, key=ok.get) and results["mode"] == "min"
    for name, value in ok.items():  # a trial's score is its best validation loss (the weights it kept)
        val_losses = [e["val_loss"] for e in _events(out / name) if e["kind"] == "val"]
        assert len(val_losses) == MAX_STEPS and value == pytest.approx(min(val_losses))
        config = (out / name / "config.toml").read_text()
        assert f"lr = {float(jobs[name]['params']['lr'])}" in config

    lines = again.stdout.splitlines()
    best_line = next(line for line in lines if line.startswith("*"))
    assert results["best"] in best_line and f"best: {results['best']} (min val_loss)" in again.stdout
    assert "pruned at step" in again.stdout and "optuna-dashboard sqlite:///" in again.stdout
    assert format_results(results).splitlines()[0].split()[:4] == ["trial", "lr", "weight_decay", "val_loss"]
    study = optuna.load_study(study_name="mmpt-sweep", storage=storage)  # what optuna-dashboard reads
    assert study.best_trial.user_attrs["name"] == results["best"] and len(study.trials) == 7


@pytest.mark.slow
def test_trials_as_parallel_processes_failures_recorded_and_one_driver_per_folder(
    source, demo_dataset, tmp_path, monkeypatch
):
    from mmpt.train.finetune import resolve_finetune_config

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two trial processes on a small machine

    base = resolve_finetune_config(
        source=str(source),
        data=str(demo_dataset.uri),
        max_steps=2,
        batch_size=32,
        overrides=["data.num_workers=0", "train.early_stop_metric=''", "train.warmup_steps=1"],
    )
    space = parse_grid(["freeze=none,image+text+audio+heads"])
    out = tmp_path / "p"
    lines: list[str] = []
    results = run_sweep(base, out, space, SweepOptions(parallel=2), echo=lines.append)
    jobs = {j["params"]["freeze"]: j for j in results["jobs"]}
    ok, failed = jobs["none"], jobs["image+text+audio+heads"]
    assert ok["status"] == "ok" and ok["metric"] is not None and results["best"] == ok["name"]
    assert results["metric"] == "headline" and not results["stopped"]
    report = json.loads((out / ok["name"] / "eval" / "final.json").read_text())  # a whole fine-tune, scored
    accuracies = [v["accuracy"] for v in report["zero_shot"].values()]
    assert ok["metric"] == pytest.approx(sum(accuracies) / len(accuracies))
    assert failed["status"] == "failed" and "leaves nothing to train" in failed["error"]
    assert (out / f"{ok['name']}.log").is_file()  # each trial ran as its own process, its output beside it

    # rerun: the study already holds its trials, so nothing trains again
    assert run_sweep(base, out, space, SweepOptions(parallel=2), echo=lines.append)["jobs"] == results["jobs"]
    with pytest.raises(ConfigError, match=r"holds a sweep with other settings \(space\)"):
        run_sweep(base, out, parse_grid(["freeze=none,text"]), echo=lines.append)
    with (out / ".sweep.lock").open("a+") as held:  # another driver owns the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="is being swept by process"):
            run_sweep(base, out, space, echo=lines.append)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                out.append(int(entry))
    return out


def _start(pid: int) -> str | None:
    """The start time of `pid` from /proc, None once it is gone or a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


@pytest.mark.slow
def test_trial_processes_die_with_a_driver_killed_with_sigkill(source, demo_dataset, tmp_path):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "mmpt", "sweep", "--from", str(source), "--data", str(demo_dataset.uri)]
    cmd += ["--out", str(out), "--processes", "--grid", "lr=1e-4,1e-3", "--pruner", "none"]
    cmd += "--max-steps 100000 --batch-size 8 --num-workers 0 --set train.log_every=1".split()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "driver.log").open("wb")
    driver = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    trials: dict[int, str | None] = {}
    try:  # kill -9 the driver once its first trial process trains (own session, so not in the driver's group)
        _wait_for(lambda: any('"kind": "train"' in m.read_text() for m in out.glob("00-*/metrics.jsonl")),
                  driver, "the first trial's first step")  # fmt: skip
        trials = {pid: _start(pid) for pid in _children(driver.pid)}
        trials = {pid: s for pid, s in trials.items() if s is not None}
        assert len(trials) == 1, trials
        (trial,) = trials
        assert os.getpgid(trial) == trial != os.getpgid(driver.pid)
        killed = time.monotonic()
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        while any(_start(p) == s for p, s in trials.items()) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        took = time.monotonic() - killed
        assert not any(_start(p) == s for p, s in trials.items()), (
            "a trial process outlived the killed driver"
        )
        assert took < 5, f"the trial process took {took:.1f} s to end after the driver was killed"
        print(f"trial process gone {took:.2f} s after the driver's kill -9")
    finally:
        for pid, start in trials.items():  # never leave a trainer behind for the rest of the suite
            if _start(pid) == start:
                os.killpg(pid, signal.SIGKILL)
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        log.close()
