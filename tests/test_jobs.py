"""mmpt.jobs with real child processes on the demo dataset: start, follow, stop, attach, resume, refuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import mmpt.jobs as jobs
from mmpt.errors import ConfigError
from mmpt.runs import RunDir, run_status

TINY = {
    "model": "tiny",
    "batch_size": 8,
    "device": "cpu",
    "num_workers": 0,
    "overrides": {
        "train.log_every": 1,
        "train.eval_after": False,
        "train.ckpt_every": 1000,
        "train.warmup_steps": 2,
    },
}


@pytest.fixture(autouse=True)
def one_thread_children(monkeypatch):
    """Child trainers use one intra-op thread: on a shared 2-core box, two threads each can be far slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def until(predicate, timeout: float = 90.0, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (and return that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def python(script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a small script in a NEW Python process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=timeout
    )


def test_argv_from_keywords_follows_the_verbs_options(tmp_path):
    argv = jobs.build_argv(
        "finetune",
        tmp_path / "ft",
        {
            "source": "runs/a",
            "data": "d.lance",
            "pairs": ["image-text", "audio-text"],
            "add": ["audio"],
            "freeze_blocks": {"image": 2},
            "probe": False,
            "overrides": {"train.eval_after": False},
            "quiet": True,
            "max_steps": 5,
            "norms_only": False,
        },
    )
    assert argv[:4] == [sys.executable, "-m", "mmpt", "finetune"]
    args = argv[4:]
    assert args[:2] == ["--run", str(tmp_path / "ft")]
    assert args[args.index("--from") + 1] == "runs/a"
    assert args[args.index("--pairs") + 1] == "image-text,audio-text"  # a list for a plain option: joined
    assert args[args.index("--add") + 1] == "audio"  # repeatable option: repeated per item
    assert args[args.index("--freeze-blocks") + 1] == "image=2"
    assert args[args.index("--set") + 1] == "train.eval_after=false"
    assert "--full" in args and "--quiet" in args and "--norms-only" not in args
    assert args[args.index("--max-steps") + 1] == "5"
    # the flag's own spelling works too (set= for --set, config= for --config)
    assert "--set" in jobs.build_argv("pretrain", "r", {"set": ["train.lr=0.1"]})


def test_bad_settings_are_one_line_errors_before_anything_starts(tmp_path, demo_dataset):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="has no setting bogus") as err:
        jobs.start("pretrain", run, data=str(demo_dataset.uri), bogus=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="'--loss'"):
        jobs.start("pretrain", run, data=str(demo_dataset.uri), loss="nope")
    with pytest.raises(ConfigError, match="unknown job kind"):
        jobs.start("train", run)
    with pytest.raises(ConfigError, match="run not found"):
        jobs.start("eval", tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"mmpt.jobs.resume\(run\)"):
        jobs.start("pretrain", run, resume_dir=str(run))
    assert not run.exists()


def test_start_follow_stop_attach_resume(tmp_path, demo_dataset):
    run = tmp_path / "run"
    job = jobs.start("pretrain", run, data=str(demo_dataset.uri), max_steps=1000, **TINY)
    assert job.is_alive() and job.status()["state"] == "running"
    info = RunDir(run).job()
    assert info["pgid"] == os.getpgid(job.pid) != os.getpgid(0)  # its own process group
    assert info["argv"][3:5] == ["pretrain", "--run"] and "--quiet" in info["argv"]

    seen: list[dict] = []
    until(lambda: seen.extend(job.events()) or any(e["kind"] == "train" for e in seen), what="train events")
    assert seen[0]["kind"] == "start" and seen[0]["total_steps"] == 1000
    assert all(e["step"] > seen[-1]["step"] for e in job.events())  # only what came after
    progress = job.progress()
    assert progress["step"] >= 1 and progress["total"] == 1000 and progress["mem_gb"] > 0
    assert set(progress["losses"]) == {"image_text", "audio_text", "image_audio"}

    with pytest.raises(ConfigError, match="already has a running"):
        jobs.start("eval", run)
    with pytest.raises(ConfigError, match="already holds a run"):
        jobs.start("pretrain", run, data=str(demo_dataset.uri))

    other = python(f"""
        import json, mmpt.jobs
        job = mmpt.jobs.attach({str(run)!r})
        print(json.dumps({{"status": job.status(), "progress": job.progress(), "alive": job.is_alive()}}))
    """)
    assert other.returncode == 0, other.stderr
    seen_there = json.loads(other.stdout)
    assert seen_there["alive"] and seen_there["status"]["state"] == "running"
    assert seen_there["status"]["kind"] == "pretrain" and seen_there["progress"]["step"] >= 1

    t0 = time.monotonic()
    status = job.stop(timeout=60)
    assert time.monotonic() - t0 < 60
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pgid, 0)
    assert status["state"] == "stopped" and not job.is_alive()
    ckpt = RunDir(run).latest_checkpoint()
    assert ckpt is not None and int(ckpt.name.split("-")[1]) == status["step"] >= 1
    assert job.stop()["state"] == "stopped"  # stopping an ended job: nothing happens, no error
    assert jobs.attach(run).status()["state"] == "stopped"

    # resume runs to the end the config names (shortened here, as a user may edit config.toml)
    rd = RunDir(run)
    cfg = rd.config_dict()
    cfg["train"]["max_steps"] = status["step"] + 2
    rd.write_config(cfg)
    resumed = job.resume()
    assert resumed.pid != job.pid
    done = resumed.wait(timeout=120)
    assert done["state"] == "finished" and done["step"] == status["step"] + 2
    assert resumed.progress()["ended"] == "end" and resumed.progress()["eta_s"] == 0.0
    assert [e["step"] for e in rd.metrics("train")] == list(range(1, status["step"] + 3))
    assert resumed.stop()["state"] == "finished"


def test_the_job_outlives_the_process_that_started_it(tmp_path, demo_dataset):
    run = tmp_path / "orphan"
    starter = python(f"""
        import mmpt.jobs
        job = mmpt.jobs.start("pretrain", {str(run)!r}, data={str(demo_dataset.uri)!r}, max_steps=2,
                              **{TINY!r})
        print(job.pid)
    """)
    assert starter.returncode == 0, starter.stderr
    job = jobs.attach(run)
    assert job.pid == int(starter.stdout)
    status = until(
        lambda: (s := run_status(run))["state"] != "running" and s, timeout=120, what="the job to end"
    )
    assert status["state"] == "finished" and status["step"] == 2
    assert job.status()["state"] == "finished"
    assert job.stop()["state"] == "finished"  # no-op on an ended job we are not the parent of


def test_a_killed_job_attaches_as_crashed_with_its_log(tmp_path, demo_dataset):
    run = tmp_path / "killed"
    job = jobs.start("pretrain", run, data=str(demo_dataset.uri), max_steps=1000, **TINY)
    until(lambda: RunDir(run).status().get("state") == "running", what="the loop to start")
    os.killpg(job.pgid, signal.SIGKILL)  # e.g. the OOM killer: no chance to write a status
    until(lambda: not jobs.attach(run).is_alive(), what="the process to die")
    status = jobs.attach(run).status()  # another Job, not the parent: the exit code is unknown
    assert status["state"] == "crashed" and "ended without" in status["reason"]
    assert any("mmpt pretrain --run" in line for line in status["log_tail"])
    assert job.status()["state"] == "crashed"  # the parent knows it was killed
    assert job.wait(timeout=5)["state"] == "crashed"
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        jobs.resume(run)  # killed before its first checkpoint


def test_in_thread_job_has_the_same_interface(tmp_path, demo_dataset, one_torch_thread):
    run = tmp_path / "thread"
    job = jobs.start("pretrain", run, in_thread=True, data=str(demo_dataset.uri), max_steps=1000, **TINY)
    assert isinstance(job, jobs.ThreadJob) and jobs.attach(run) is job
    until(lambda: (job.progress()["step"] or 0) >= 1, what="a train step")
    assert job.status()["state"] == "running"
    with pytest.raises(ConfigError, match="already has a running"):
        jobs.start("eval", run)
    other = python(f"""
        import mmpt.jobs
        from mmpt.errors import ConfigError
        job = mmpt.jobs.attach({str(run)!r})
        print(job.status()["state"], job.is_alive())
        try:
            job.stop()
        except ConfigError as exc:
            print(exc)
    """)
    assert other.returncode == 0, other.stderr
    assert other.stdout.startswith("running True\n") and "stop it from there" in other.stdout
    status = job.stop(timeout=60)
    assert status["state"] == "stopped" and not job.is_alive()
    assert RunDir(run).latest_checkpoint() is not None
    assert job.result.stopped and job.result.step == status["step"]
    with pytest.raises(ConfigError, match="only pretrain and finetune"):
        jobs.start("eval", run, in_thread=True)


def test_a_job_that_fails_on_bad_input_reports_the_error(tmp_path):
    run = tmp_path / "bad"
    job = jobs.start("pretrain", run, data=str(tmp_path / "no.lance"), max_steps=2, **TINY)
    status = job.wait(timeout=120)
    assert status["state"] == "failed" and status["returncode"] == 1
    assert "no.lance" in status["error"]
    assert jobs.attach(run).status()["state"] == "failed"  # job.json keeps the exit code for later readers
