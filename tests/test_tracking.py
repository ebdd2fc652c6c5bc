"""`--report-to`: the trackers hold what metrics.jsonl holds (read back with each library's own reader); a tracker
that is missing, cannot start or fails later is one warning line and the run goes on; rank 0 only."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import pytest

from mmpt.errors import ConfigError
from mmpt.runs import RunDir
from mmpt.train.config import RunConfig, apply_overrides
from mmpt.train.reporting import Reporting, open_reporting
from mmpt.train.trackers import Tracker, mlflow_key


def _events(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def _wandb_records(run_dir):
    """The offline run's records, as wandb's own transaction-log reader prints them."""
    (log,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "wandb"), "leet", "inspect", "--json", log],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_trackers_hold_the_values_of_metrics_jsonl(demo_dataset, tmp_path, monkeypatch, one_torch_thread):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmpt.eval.report import flatten
    from mmpt.train.pretrain import pretrain, resolve_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT", "RANK"):
        monkeypatch.delenv(var, raising=False)
    cfg = resolve_config(
        data=str(demo_dataset.uri),
        model="tiny",
        max_steps=4,
        batch_size=32,
        device="cpu",
        report_to="tensorboard,mlflow,wandb",
        overrides=["train.log_every=1", "train.val_every=2", "data.num_workers=0", "train.warmup_steps=1"],
    )
    run = pretrain(cfg, tmp_path / "run", progress=False).run.path
    train, val = _events(run, "train"), _events(run, "val")
    losses = {e["step"]: e["loss"] for e in train}
    val_losses = {e["step"]: e["val_loss"] for e in val}
    assert sorted(losses) == [1, 2, 3, 4] and sorted(val_losses) == [2, 4]
    start = _events(run, "start")[0]
    report = flatten(json.loads((run / "eval" / "final.json").read_text()))
    r1 = next(k for k in report if k.endswith("r@1"))
    ids = json.loads((run / "trackers.json").read_text())

    # TensorBoard: the event files, read by tensorboard's EventAccumulator
    tb = EventAccumulator(str(run / "tensorboard"))
    tb.Reload()
    assert {s.step: s.value for s in tb.Scalars("loss")} == pytest.approx(losses, rel=1e-6)
    assert {s.step: s.value for s in tb.Scalars("val_loss")} == pytest.approx(val_losses, rel=1e-6)
    assert tb.Scalars(f"eval/{r1}")[-1].value == pytest.approx(report[r1], rel=1e-6)

    # MLflow: the SQLite store under the run, read by MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    mlrun = client.get_run(ids["mlflow"])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "run"
    history = client.get_metric_history(ids["mlflow"], "loss")
    assert {m.step: m.value for m in history} == pytest.approx(losses, rel=1e-12)
    val_history = client.get_metric_history(ids["mlflow"], "val_loss")
    assert {m.step: m.value for m in val_history} == pytest.approx(val_losses, rel=1e-12)
    params = mlrun.data.params
    assert params["train.lr"] == str(cfg.train.lr) and params["model.name"] == "tiny"
    assert params["run.params"] == str(start["params"])  # the model size
    assert mlrun.data.metrics[mlflow_key(f"eval/{r1}")] == pytest.approx(report[r1])

    # W&B: the offline run's .wandb transaction log, read by wandb's own reader
    records = _wandb_records(run)
    history_rows = [r["history"] for r in records if r["type"] == "history"]
    logged: dict[int, dict] = {}
    for h in history_rows:
        logged.setdefault(h["step"]["num"], {}).update(h["item"])
    assert {s: logged[s]["loss"] for s in losses} == pytest.approx(losses, rel=1e-12)
    assert {s: logged[s]["val_loss"] for s in val_losses} == pytest.approx(val_losses, rel=1e-12)
    run_record = next(r["run"] for r in records if r["type"] == "run")
    assert run_record["config"]["update"]["train"]["lr"] == cfg.train.lr
    assert run_record["run_id"] == ids["wandb"] and run_record["display_name"] == "run"
    summary: dict = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    assert summary[f"eval/{r1}"] == pytest.approx(report[r1])
    exit_record = next(r["exit"] for r in records if r["type"] == "exit")
    assert exit_record.get("exit_code", 0) == 0


@pytest.mark.slow
def test_missing_or_broken_tracker_is_one_warning_line_and_the_run_finishes(demo_dataset, tmp_path):
    # trackio is not part of the dev extra; this stand-in makes it missing even where it is installed
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "trackio.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'trackio'\", name='trackio')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "no-such-mode",  # wandb is installed but refuses to start with it
        "OMP_NUM_THREADS": "1",
    }
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mmpt", "pretrain", "--data", str(demo_dataset.uri), "--run", str(run)]
    cmd += ["--model", "tiny", "--max-steps", "2", "--batch-size", "32", "--num-workers", "0", "--quiet"]
    cmd += ["--report-to", "trackio,wandb,tensorboard", "--set", "train.eval_after=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 2, proc.stderr
    assert "not reporting to trackio: trackio is not installed (pip install 'mmpt[trackio]')" in warnings[0]
    assert "not reporting to wandb: it could not start" in warnings[1]
    assert not any("Traceback" in line for line in proc.stderr.splitlines())
    assert RunDir(run).status()["state"] == "finished" and "finished at step 2" in proc.stdout
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # the working tracker still reports
    assert json.loads((run / "trackers.json").read_text()) == {"tensorboard": "tensorboard"}


class _Recorder(Tracker):
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log(self, step, metrics):
        self.calls.append(("log", step, metrics))

    def log_params(self, params):
        self.calls.append(("params", params))

    def summary(self, values, step):
        self.calls.append(("summary", step, values))

    def close(self, state):
        self.calls.append(("close", state))


class _Broken(_Recorder):
    name = "broken"

    def log(self, step, metrics):
        raise OSError("disk full\nsecond line")


def test_session_forwards_this_sessions_events_and_drops_a_failing_tracker(tmp_path, capsys):
    run = RunDir.create(tmp_path / "run", {})
    run.log({"kind": "train", "step": 1, "loss": 9.0, "time": time.time() - 60})  # an earlier session's
    good, bad = _Recorder(), _Broken()
    session = Reporting(run, [good, bad])
    hook_calls: list[int] = []
    on_event = session.hook({"on_event": lambda e: hook_calls.append(e["step"])})["on_event"]
    for event in (
        {"kind": "start", "step": 1, "params": 1000, "trainable": 10},
        {"kind": "train", "step": 2, "loss": 3.5, "lr": 0.1, "flag": True, "note": "x"},
        {"kind": "val", "step": 2, "val_loss": 4.0},
        {"kind": "train", "step": 3, "loss": 3.0, "lr": 0.1},
        {"kind": "end", "step": 3, "epoch": 0},
    ):
        event["time"] = time.time()
        run.log(event)
        on_event(event)
    (run.eval_dir / "final.json").write_text(json.dumps({"retrieval": {"image_to_text": {"r@1": 0.25}}}))
    session.close("finished")
    assert hook_calls == [1, 2, 2, 3, 3]  # the caller's own on_event still sees every event
    assert good.calls == [
        ("params", {"run.params": 1000.0, "run.trainable": 10.0}),
        ("log", 2, {"loss": 3.5, "lr": 0.1}),
        ("log", 2, {"val_loss": 4.0}),
        ("log", 3, {"loss": 3.0, "lr": 0.1}),
        ("summary", 3, {"eval/retrieval.image_to_text.r@1": 0.25}),
        ("close", "finished"),
    ]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "mmpt: warning: stopped reporting to broken: disk full second line (metrics.jsonl has every value)"
    ]
    assert bad.calls == [("params", {"run.params": 1000.0, "run.trainable": 10.0})]  # dropped after failing


def test_report_to_is_validated_and_only_rank_0_reports(tmp_path, monkeypatch):
    cfg = apply_overrides(RunConfig(), ["train.report_to='TensorBoard, mlflow,tensorboard'"])
    assert cfg.train.report_to == ["tensorboard", "mlflow"]
    assert apply_overrides(cfg, ["train.report_to=none"]).train.report_to == []
    with pytest.raises(ConfigError, match="unknown tracker 'neptune' in report_to; choose from tensorboard"):
        apply_overrides(RunConfig(), ["train.report_to=['neptune']"])
    run = RunDir.create(tmp_path / "run", cfg.to_dict())
    monkeypatch.setenv("RANK", "1")
    session = open_reporting(cfg, run)
    assert session.trackers == [] and not (run.path / "tensorboard").exists()
    assert not (run.path / "trackers.json").exists()
