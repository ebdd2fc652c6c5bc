"""Fault suite, checkpoints: corrupted files are caught on every load path and skipped on resume, kill -9 of a
real `mmpt pretrain` at random points (inside a checkpoint write too) always leaves a run that resumes or
restarts to the uninterrupted weights, and no worker process outlives a killed parent.

Kills inside a checkpoint use the documented test hook MMPT_TEST_CHECKPOINT_PAUSE (mmpt.runs.rundir): the write
sleeps after each file, so a kill lands between any two of its steps. Random choices come from one seed,
printed in every failure message (set MMPT_FAULT_SEED to replay one).
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fault_tally
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmpt.checksums import MANIFEST, CorruptCheckpoint
from mmpt.errors import ConfigError
from mmpt.models.checkpoint import load_model
from mmpt.runs import RESUME_FILES, RunDir, read_checkpoint_state

SEED = int(os.environ.get("MMPT_FAULT_SEED", time.time_ns() % 100_000))
BASE = [
    "--batch-size",
    "8",
    "--num-workers",
    "0",
    "--quiet",
    "--device",
    "cpu",
    "--set",
    "train.ckpt_every=2",
    "--set",
    "train.log_every=1",
    "--set",
    "train.eval_after=false",
    "--set",
    "train.warmup_steps=2",
]
STEPS = 8


# ---- helpers -----------------------------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def mmpt(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmpt", *args],
        capture_output=True,
        text=True,
        env=child_env(**env),
        timeout=600,
    )


def start(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mmpt", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(**env),
    )


def wait_until(predicate, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"seed {SEED}: process ended before {what}: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"seed {SEED}: timed out waiting for {what}")


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def last_step(run: Path) -> int:
    try:
        events = RunDir(run).metrics("train")
    except (OSError, ValueError):  # a line half-written at the moment we read
        return 0
    return events[-1]["step"] if events else 0


def one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), res.stderr
    return last


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def overwrite_4kb(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    rng = random.Random(SEED)
    patch = bytes(rng.randrange(256) for _ in range(4096))
    assert patch != bytes(data[middle : middle + 4096])
    data[middle : middle + 4096] = patch
    path.write_bytes(bytes(data))


def descendants(pid: int) -> list[int]:
    """All processes below `pid` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int, start: str) -> bool:
    """`pid` is still the process that had start time `start`, and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0] not in ("Z", "X") and fields[19] == start


def start_time(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :].split()[19]


def assert_children_die_with(proc: subprocess.Popen, children: list[int], within: float = 5.0) -> float:
    """Kill -9 `proc`; every one of `children` must be gone within `within` seconds; returns how long it took."""
    starts = {pid: start_time(pid) for pid in children}
    t0 = time.monotonic()
    kill9(proc)
    while time.monotonic() - t0 < within:
        left = [pid for pid, s in starts.items() if alive(pid, s)]
        if not left:
            return time.monotonic() - t0
        time.sleep(0.05)
    for pid in left:  # do not leave them behind for the rest of the suite
        os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"{len(left)} child processes outlived their killed parent by {within} s: {left}")


# ---- a small trained run, copied by each test before it breaks anything --------------------------------------


@pytest.fixture(scope="module")
def trained(demo_dataset, tmp_path_factory, one_torch_thread) -> Path:
    """A tiny run of 4 steps with checkpoints step-0000002 and step-0000004 (read-only: copy it)."""
    from mmpt.train.pretrain import pretrain, resolve_config

    cfg = resolve_config(
        data=str(demo_dataset.uri),
        model="tiny",
        max_steps=4,
        batch_size=16,
        device="cpu",
        seed=0,
        overrides=[
            "train.ckpt_every=2",
            "train.eval_after=false",
            "data.num_workers=0",
            "train.warmup_steps=1",
        ],
    )
    run = tmp_path_factory.mktemp("fault_ckpt") / "run"
    pretrain(cfg, run, progress=False)
    assert [p.name for p in RunDir(run).checkpoint_list()] == ["step-0000002", "step-0000004"]
    return run


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


def ckpt(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:07d}"


# ---- finding 1: a content hash per file, verified on every load ----------------------------------------------


def test_4kb_overwritten_in_the_weights_is_refused_by_every_loader(run_copy, caplog):
    from mmpt.embed.encoder import load_model as load_encoder
    from mmpt.eval.run import load_run_model
    from mmpt.models.safe_load import load_tensors
    from mmpt.train.finetune import _load_base
    from mmpt.train.pretrain import require_resumable

    good = weights(ckpt(run_copy, 2))
    bad = ckpt(run_copy, 4) / "model.safetensors"
    overwrite_4kb(bad)
    cases = 0

    # a checkpoint named explicitly (eval/embed --run CKPT, finetune --from CKPT, an open_clip-style load of its
    # file): one line naming the file, nothing loaded
    named = (
        lambda: load_model(ckpt(run_copy, 4)),
        lambda: load_tensors(bad),
        lambda: _load_base(str(ckpt(run_copy, 4)), "", 32),
    )
    for load in named:
        with pytest.raises(CorruptCheckpoint) as err:
            load()
        assert str(bad) in str(err.value) and "\n" not in str(err.value) and "sha256" in str(err.value)
        cases += 1

    # the run folder: eval, embed/search, finetune --from RUN and resume all take step 2, saying why
    caplog.set_level("WARNING", logger="mmpt.checkpoints")
    model = load_run_model(run_copy)
    assert same_weights(model.state_dict(), good)
    encoder = load_encoder(run_copy, device="cpu")
    assert same_weights(encoder.model.state_dict(), good)
    source = _load_base(str(run_copy), "", 32)
    assert same_weights(source.model.state_dict(), good)
    found, skipped = RunDir(run_copy).find_checkpoint(need=RESUME_FILES)
    assert found == ckpt(run_copy, 2) and skipped and skipped[0].startswith("step-0000004: model.safetensors")
    require_resumable(RunDir(run_copy), "pretrain")
    cases += 4
    said = [r.getMessage() for r in caplog.records if "skipping checkpoint" in r.getMessage()]
    assert said and "step-0000004" in said[0] and "model.safetensors" in said[0]
    assert len(said) == 1, said  # said once, however many loaders looked
    fault_tally.record("corruptions", cases)


CORRUPTIONS = (
    "flip",
    "truncate",
    "append",
    "delete_file",
    "delete_manifest",
    "wrong_hash",
    "garbage_manifest",
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(CORRUPTIONS),
    name=st.sampled_from(RESUME_FILES),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_any_corruption_of_the_latest_checkpoint_is_caught_and_resume_falls_back(
    run_copy, kind, name, where, bit
):
    folder = ckpt(run_copy, 4)
    path, manifest = folder / name, folder / MANIFEST
    saved = {p: p.read_bytes() for p in (path, manifest)}
    try:
        data = saved[path]
        offset = int(where * len(data))
        if kind == "flip":
            path.write_bytes(data[:offset] + bytes([data[offset] ^ (1 << bit)]) + data[offset + 1 :])
        elif kind == "truncate":
            path.write_bytes(data[:offset])
        elif kind == "append":
            path.write_bytes(data + b"\0")
        elif kind == "delete_file":
            path.unlink()
        elif kind == "delete_manifest":
            manifest.unlink()
        elif kind == "wrong_hash":
            listed = json.loads(saved[manifest])
            listed["files"][name]["sha256"] = "0" * 64
            manifest.write_text(json.dumps(listed))
        else:
            manifest.write_bytes(bytes(random.Random(offset).randrange(256) for _ in range(64)))

        found, skipped = RunDir(run_copy).find_checkpoint(need=RESUME_FILES)
        assert found == ckpt(run_copy, 4 - 2), (kind, name, skipped)
        assert len(skipped) == 1 and skipped[0].startswith("step-0000004"), skipped
        # each loader checks the files it reads (and every one refuses a folder whose manifest is gone)
        whole_folder = kind in ("delete_manifest", "garbage_manifest")
        if whole_folder or name in ("state.json", "optim.pt"):
            with pytest.raises(CorruptCheckpoint):
                read_checkpoint_state(folder)
        else:  # the resume state is intact: only the weights are refused (by load_model below)
            assert read_checkpoint_state(folder)[0]["step"] == 4
        if whole_folder or name in ("model.safetensors", "model.json"):
            with pytest.raises(CorruptCheckpoint):
                load_model(folder)
        else:  # the model files are intact: eval may use them, only a resume needs optim.pt and state.json
            assert same_weights(load_model(folder).state_dict(), weights(folder))
        fault_tally.record("corruptions", 1)
    except BaseException:
        fault_tally.record("corruptions", 1, violations=1)
        raise
    finally:
        for p, content in saved.items():
            p.write_bytes(content)


def test_a_checkpoint_saved_before_checksums_loads_unverified_once_and_truncation_is_still_caught(
    trained, tmp_path, caplog
):
    from safetensors.torch import save_file

    legacy = tmp_path / "legacy"
    shutil.copytree(ckpt(trained, 2), legacy)
    tensors = weights(legacy)
    save_file(tensors, str(legacy / "model.safetensors"), metadata={"format": "pt"})  # the old writer's file
    (legacy / MANIFEST).unlink()
    caplog.set_level("WARNING", logger="mmpt.checkpoints")
    for _ in range(2):
        assert same_weights(load_model(legacy).state_dict(), tensors)
    unverified = [r for r in caplog.records if "unverified" in r.getMessage()]
    assert len(unverified) == 1 and str(legacy) in unverified[0].getMessage()

    data = (legacy / "model.safetensors").read_bytes()
    (legacy / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(CorruptCheckpoint, match="truncated"):
        load_model(legacy)
    fault_tally.record("corruptions", 2)


# ---- findings 2 and 3: no intact checkpoint, and starting over -----------------------------------------------


def test_no_intact_checkpoint_names_restart_and_restart_keeps_nothing_but_the_job_files(run_copy):
    from mmpt.jobs.process import check_startable
    from mmpt.train.pretrain import require_resumable

    data = (ckpt(run_copy, 2) / "optim.pt").read_bytes()
    (ckpt(run_copy, 2) / "optim.pt").write_bytes(data[: len(data) // 2])
    overwrite_4kb(ckpt(run_copy, 4) / "model.safetensors")
    rd = RunDir(run_copy)
    with pytest.raises(ConfigError) as err:
        require_resumable(rd, "pretrain")
    message = str(err.value)
    assert (
        "\n" not in message and "no intact checkpoint" in message and f"--run {run_copy} --restart" in message
    )
    assert "step-0000004: model.safetensors" in message and "step-0000002: optim.pt" in message
    assert rd.latest_checkpoint(verify=False) is not None  # what a listing shows stays cheap
    assert rd.require_checkpoint() == ckpt(run_copy, 2)  # its weights are intact: eval and embed still work

    from mmpt.eval.run import load_run_model

    (ckpt(run_copy, 2) / "model.json").write_text("{}")  # now no checkpoint has intact model files
    with pytest.raises(ConfigError) as err:
        load_run_model(run_copy)
    message = str(err.value)
    assert "\n" not in message and "no intact checkpoint" in message, message
    assert "step-0000004: model.safetensors" in message and "step-0000002: model.json" in message, message

    config = rd.config_dict()
    with pytest.raises(ConfigError, match="already holds a run.*--restart"):
        RunDir.create(run_copy, config)
    with pytest.raises(ConfigError, match="already holds a run"):
        check_startable("pretrain", rd, resume=False)
    check_startable("pretrain", rd, resume=False, restart=True)

    rd.write_job({"kind": "pretrain", "pid": os.getpid()})  # this very process is the job doing the restart
    (run_copy / "logs").mkdir()
    (run_copy / "logs" / "pretrain.log").write_text("--- started\n")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:  # another live trainer recorded in status.json: refused
        rd.write_status("running")
        status = rd.status()
        status.update(pid=sleeper.pid, pid_start=float(start_time(sleeper.pid)))
        (run_copy / "status.json").write_text(json.dumps(status))
        with pytest.raises(ConfigError, match=f"being trained by process {sleeper.pid}"):
            RunDir.create(run_copy, config, restart=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    fresh = RunDir.create(run_copy, config, restart=True)
    assert fresh.checkpoint_list() == [] and fresh.metrics() == [] and not list(fresh.eval_dir.iterdir())
    assert not fresh.status_path.exists() and fresh.config_dict() == config
    assert (
        fresh.job()["kind"] == "pretrain"
        and (run_copy / "logs" / "pretrain.log").read_text() == "--- started\n"
    )
    fault_tally.record("corruptions", 2)


def test_cli_one_line_for_a_named_corrupt_checkpoint_and_fallback_for_the_run(run_copy, demo_dataset):
    overwrite_4kb(ckpt(run_copy, 4) / "model.safetensors")
    named = mmpt("eval", "--run", str(ckpt(run_copy, 4)), "--data", str(demo_dataset.uri), "--quiet")
    line = one_line_error(named)
    assert f"{ckpt(run_copy, 4)}/model.safetensors is corrupt" in line, line
    assert not (ckpt(run_copy, 4) / "eval").exists()

    whole = mmpt("eval", "--run", str(run_copy), "--quiet", "--json", "--device", "cpu")
    assert whole.returncode == 0, whole.stderr
    assert "skipping checkpoint" in whole.stderr and "step-0000004" in whole.stderr, whole.stderr
    assert json.loads((run_copy / "eval" / "test.json").read_text())["meta"]["checkpoint"] == "step-0000002"
    fault_tally.record("corruptions", 2)


# ---- the classification head of `mmpt finetune --task classify` is hashed and checked too --------------------


def test_a_corrupt_classification_head_is_one_line_and_never_loaded(demo_dataset, tmp_path, one_torch_thread):
    from mmpt.models import build_model, preset_config, save_model
    from mmpt.train.classify import CorruptHead, load_classifier
    from mmpt.train.finetune import finetune, resolve_finetune_config

    torch.manual_seed(0)
    source = save_model(build_model(preset_config("tiny")), tmp_path / "random")
    cfg = resolve_finetune_config(
        source=str(source),
        data=str(demo_dataset.uri),
        overrides=["data.num_workers=0", "train.warmup_steps=1"],
        finetune={"task": "classify", "label_col": "colour", "towers": ["audio"], "head_epochs": 20},
        max_steps=2,
        batch_size=32,
    )
    run = tmp_path / "classify"
    finetune(cfg, run, progress=False)
    head_file, meta_file, manifest = run / "head.safetensors", run / "head.json", run / MANIFEST
    assert set(json.loads(manifest.read_text())["files"]) == {"head.safetensors", "head.json"}
    good = load_classifier(run)[1].state_dict()
    saved = {p: p.read_bytes() for p in (head_file, meta_file, manifest)}
    rng = random.Random(SEED)

    def flip(path: Path) -> None:
        data = bytearray(saved[path])
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))

    breaks = (
        (head_file, lambda: flip(head_file), "is corrupt: its sha256 differs"),
        (head_file, lambda: head_file.write_bytes(saved[head_file][:-100]), "(truncated or changed)"),
        (
            meta_file,
            lambda: meta_file.write_text(saved[meta_file].decode().replace("blue", "bleu")),
            "sha256",
        ),
        (manifest, manifest.unlink, "is missing: head.safetensors was saved with one"),
    )
    for path, damage, reason in breaks:
        damage()
        try:
            with pytest.raises(
                CorruptCheckpoint
            ) as err:  # CorruptHead is one: the same class as a checkpoint's
                load_classifier(run)
            message = str(err.value)
            assert isinstance(err.value, CorruptHead) and "\n" not in message, message
            assert message.startswith(f"classification head file {path} ") and reason in message, message
            assert f"mmpt finetune --run {run} --restart" in message, message
        except BaseException:
            fault_tally.record("corruptions", 1, violations=1)
            raise
        finally:
            for p, content in saved.items():
                p.write_bytes(content)
        fault_tally.record("corruptions", 1)
    restored = load_classifier(run)[1].state_dict()  # put back as written: it loads again, unchanged
    assert restored.keys() == good.keys() and all(torch.equal(restored[k], good[k]) for k in good)


# ---- kill -9 of a real pretrain at random points, inside checkpoint writes too -------------------------------


def test_kill9_anywhere_then_resume_or_restart_reaches_the_uninterrupted_weights(demo_dataset, tmp_path):
    rng = random.Random(SEED)
    data = str(demo_dataset.uri)
    straight, run = tmp_path / "straight", tmp_path / "killed"
    done = mmpt("pretrain", "--data", data, "--run", str(straight), "--max-steps", str(STEPS), *BASE)
    assert done.returncode == 0, done.stderr
    kills = 0
    pause = "0.4"

    # 1. killed inside its first checkpoint, before the folder was renamed into place: the run is stuck today
    proc = start("pretrain", "--data", data, "--run", str(run), "--max-steps", str(STEPS), *BASE,
                 MMPT_TEST_CHECKPOINT_PAUSE=pause)  # fmt: skip
    tmp = run / "checkpoints" / ".tmp-step-0000002"
    wait_until(lambda: (tmp / "model.safetensors").is_file(), proc, "the first checkpoint write")
    time.sleep(rng.uniform(0, 2 * float(pause)))  # after the weights, before the rename (at least 3 pauses)
    kill9(proc)
    kills += 1
    assert RunDir(run).checkpoint_list() == [], f"seed {SEED}"
    line = one_line_error(mmpt("pretrain", "--resume", str(run), "--quiet"))
    assert "no intact checkpoint" in line and f"--run {run} --restart" in line, line
    line = one_line_error(
        mmpt("pretrain", "--data", data, "--run", str(run), "--max-steps", str(STEPS), *BASE)
    )
    assert "already holds a run" in line and "--restart" in line, line

    # 2. started over with its saved settings, killed after a random step
    proc = start("pretrain", "--run", str(run), "--restart", "--quiet")
    stop_at = rng.randint(3, STEPS - 3)
    wait_until(lambda: last_step(run) >= stop_at, proc, f"step {stop_at}")
    kill9(proc)
    kills += 1
    assert not (run / "checkpoints" / ".tmp-step-0000002").exists()

    # 3. resumed, killed at a random point inside a later checkpoint write (files, manifest, rename, pointer)
    resumed_from = RunDir(run).latest_checkpoint(need=RESUME_FILES)
    assert resumed_from is not None, f"seed {SEED}"
    newer = [f".tmp-step-{s:07d}" for s in range(int(resumed_from.name[5:]) + 2, STEPS + 1, 2)]
    if newer:  # (the kill in 2. may have landed after the last checkpoint)
        proc = start("pretrain", "--resume", str(run), "--quiet", MMPT_TEST_CHECKPOINT_PAUSE=pause)
        target = run / "checkpoints" / rng.choice(newer)
        wait_until(target.exists, proc, f"the write of {target.name}")
        time.sleep(rng.uniform(0, 5.5 * float(pause)))
        kill9(proc)
        kills += 1

    # 4. resumed to the end: the same weights and the same logged figures as the run never interrupted
    final = mmpt("pretrain", "--resume", str(run), "--quiet")
    assert final.returncode == 0, f"seed {SEED}: {final.stderr}"
    assert RunDir(run).status()["state"] == "finished"
    end = RunDir(run).latest_checkpoint(need=RESUME_FILES)
    assert end is not None and end.name == f"step-{STEPS:07d}"
    same = same_weights(weights(end), weights(RunDir(straight).latest_checkpoint()))
    steps = [e["step"] for e in RunDir(run).metrics("train")]
    fault_tally.record("kills", kills, violations=0 if same and steps == list(range(1, STEPS + 1)) else 1)
    assert same, f"seed {SEED}: the resumed run's weights differ from the uninterrupted run's"
    assert steps == list(range(1, STEPS + 1)), f"seed {SEED}: {steps}"


# ---- finding 4: no child process outlives its parent ---------------------------------------------------------


def test_no_worker_outlives_a_killed_ingest_or_pretrain(demo_dataset, tmp_path):
    from mmpt.store.synthetic import write_demo_files

    rng = random.Random(SEED)
    manifest = write_demo_files(tmp_path / "files", n_rows=120, seed=1)
    took = []

    # ingest --append --workers 2: killed once its two pool workers run (and again, a random moment later)
    for round_ in range(2):
        out = tmp_path / f"append{round_}.lance"
        proc = start(
            "ingest", str(manifest), "-o", str(out), "--append", "--workers", "2", "--batch-rows", "4", "-q"
        )
        wait_until(functools.partial(pool_workers_up, proc.pid, 2), proc, "two ingest workers")
        time.sleep(rng.uniform(0, 0.5) * round_)
        took.append(assert_children_die_with(proc, descendants(proc.pid)))

    # pretrain --num-workers 2: killed mid-training; the forkserver and its DataLoader workers go too
    run = tmp_path / "run"
    proc = start("pretrain", "--data", str(demo_dataset.uri), "--run", str(run), "--max-steps", "500",
                 "--batch-size", "8", "--num-workers", "2", "--device", "cpu", "--quiet",
                 "--set", "train.log_every=1", "--set", "train.eval_after=false")  # fmt: skip
    wait_until(lambda: last_step(run) >= 1, proc, "the first training step")
    kids = descendants(proc.pid)
    assert len(kids) >= 3, kids  # forkserver + 2 workers (+ resource tracker)
    took.append(assert_children_die_with(proc, kids))
    fault_tally.record("kills", 3)
    print(f"children gone {max(took):.2f} s after the kill at most")


def pool_workers_up(pid: int, n: int) -> bool:
    """At least `n` spawned multiprocessing workers run under `pid`."""
    found = 0
    for child in descendants(pid):
        try:
            found += b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            pass
    return found >= n
