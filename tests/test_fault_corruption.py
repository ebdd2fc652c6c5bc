"""Corrupted dataset files: bit flips in the id column and in blob payloads, a damaged footer, a truncated or
deleted data file, a broken or truncated manifest. `data info`, `data verify` and `ingest --append` answer
with one line naming the file (never a traceback or a Rust panic report), and `data verify --repair` brings
back the newest version that reads fully."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import fault_tally
import lance
import lance.file
import pytest
from fault_support import error_line, mmpt, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmpt.cli import main
from mmpt.store.ingest import ingest
from mmpt.store.integrity import check_latest, repair
from mmpt.store.synthetic import demo_frame


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A two-version dataset: 30 demo rows, then 30 more appended (read-only: copy before damaging)."""
    out = tmp_path_factory.mktemp("corrupt") / "t.lance"
    frame = demo_frame(60, seed=3)
    ingest(frame.iloc[:30], out, quiet=True)
    ingest(frame.iloc[30:], out, append=True, quiet=True)
    return out


def more_rows(folder: Path) -> Path:
    """Two more demo rows (text and metadata, same columns as the template) as a CSV manifest."""
    path = folder / "more.csv"
    demo_frame(62, seed=3).iloc[60:].drop(columns=["image", "audio"]).to_csv(path, index=False)
    return path


def newest_data_file(uri: Path) -> Path:
    """The data file the append (version 2) wrote."""
    v1 = {d.path for f in lance.dataset(str(uri), version=1).get_fragments() for d in f.data_files()}
    latest = [d.path for f in lance.dataset(str(uri)).get_fragments() for d in f.data_files()]
    return uri / "data" / next(p for p in latest if p not in v1)


def newest_manifest(uri: Path) -> Path:
    return min((uri / "_versions").glob("*.manifest"), key=lambda p: int(p.stem))  # V2 names count down


def flip(path: Path, start: int, stop: int, n: int, seed: int) -> None:
    rng, data = random.Random(seed), bytearray(path.read_bytes())
    for _ in range(n):
        at = rng.randrange(start, stop)
        data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def id_buffers(path: Path) -> tuple[int, int]:
    """(start, stop) of the id column's value bytes in a Lance data file (its first column's last buffer)."""
    buffer = lance.file.LanceFileReader(str(path)).metadata().columns[0].pages[0].buffers[-1]
    return buffer.position, buffer.position + buffer.size


def damage(uri: Path, kind: str) -> str:
    """Damage the dataset; returns the file name the messages must mention."""
    if kind.startswith("manifest"):
        path = newest_manifest(uri)
        if kind == "manifest-bits":
            flip(path, 64, path.stat().st_size - 16, 200, seed=1)
        else:
            os.truncate(path, 100)
        return path.name
    path = newest_data_file(uri)
    size = path.stat().st_size
    if kind == "id-bits":
        flip(path, *id_buffers(path), 8, seed=0)
    elif kind == "footer":
        flip(path, size - 3000, size - 100, 64, seed=2)
    elif kind == "truncated":
        os.truncate(path, size - 40)
    elif kind == "deleted":
        path.unlink()
    elif kind == "blob-bits":
        flip(path, 1000, size // 2, 40, seed=3)
    return path.name


KINDS = ["id-bits", "footer", "truncated", "deleted", "blob-bits", "manifest-bits", "manifest-truncated"]


@pytest.mark.parametrize("kind", KINDS)
def test_damage_is_one_line_and_repair_restores_the_last_good_version(template, tmp_path, kind):
    uri = tmp_path / "d.lance"
    shutil.copytree(template, uri)
    good = snapshot(uri, 1)
    named = damage(uri, kind)

    info = mmpt("data", "info", uri)
    if info.returncode:  # info reads only some columns: it may not touch the damage, but must not crash
        line = error_line(info.stderr)
        assert named in line and "--repair" in line, line
    verify = mmpt("data", "verify", uri)
    assert verify.returncode == 1
    line = error_line(verify.stderr)
    assert (named in line or "do not match their sha256" in line) and f"--repair {uri}" in line, line
    more = more_rows(tmp_path)
    appended = mmpt("ingest", more, "--out", uri, "--append", "-q")
    if kind != "blob-bits":  # an append reads the ids (and the manifest): one line, nothing written
        assert appended.returncode == 1 and "--repair" in error_line(appended.stderr)

    repaired = mmpt("data", "verify", "--repair", uri)
    assert repaired.returncode == 0, repaired.stderr
    assert f"to version {good[0]}" in repaired.stdout and "Traceback" not in repaired.stderr
    again = mmpt("data", "verify", uri)
    assert again.returncode == 0, again.stderr
    assert snapshot(uri)[1] == good[1]  # the newest good version's rows, now the latest
    assert mmpt("ingest", more, "--out", uri, "--append", "-q").returncode == 0  # writable again
    fault_tally.record("corruptions", 1)


def test_no_good_version_left_is_one_line(template, tmp_path):
    uri = tmp_path / "d.lance"
    shutil.copytree(template, uri)
    first = next(p for p in (uri / "data").glob("*.lance") if p != newest_data_file(uri))
    os.truncate(first, first.stat().st_size // 2)  # version 1's own file: every version holds it
    result = mmpt("data", "verify", "--repair", uri)
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "no version of" in line and first.name in line and "re-ingest" in line
    fault_tally.record("corruptions", 1)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.floats(0.0, 1.0), flips=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_random_bit_flips_are_found_or_harmless_and_repaired(template, tmp_path_factory, offset, flips, seed):
    """Bit flips anywhere in the appended data file: checking never raises, and whatever it finds, repair
    brings back version 1 intact. (Lance has no checksums: a flip inside a caption can read back silently.)"""
    uri = tmp_path_factory.mktemp("flip") / "d.lance"
    shutil.copytree(template, uri)
    good = snapshot(uri, 1)
    path = newest_data_file(uri)
    size = path.stat().st_size
    at = int(offset * (size - 64))
    flip(path, at, min(size, at + 64), flips, seed)
    violations = 0
    try:
        result = check_latest(str(uri))
        if not result.ok:
            repair(str(uri))
            violations += not check_latest(str(uri)).ok or snapshot(uri)[1] != good[1]
    except Exception as exc:  # noqa: BLE001 - a DataError or anything else escaping is a violation here
        violations += 1
        raise AssertionError(f"checking or repairing raised {exc!r}") from exc
    finally:
        fault_tally.record("corruptions", 1, violations)
    assert violations == 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random model's checkpoint folder (for the verbs that embed, search, evaluate)."""
    import torch

    from mmpt.models import build_model, preset_config, save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "run" / "checkpoints" / "step-0000001"
    return save_model(build_model(preset_config("tiny")), folder)


def test_every_verb_reading_a_damaged_dataset_says_so_in_one_line(template, checkpoint, tmp_path, capfd):
    """search (through the embedding it needs first), eval and pretrain (whose DataLoader workers read the
    data) meet a corrupted id column elsewhere than `data info`: each answers with one line naming the file
    and the repair. search and eval run in this process (fd-level capture still sees a Rust report), pretrain
    as its own process, with its workers."""
    uri = tmp_path / "d.lance"
    shutil.copytree(template, uri)
    named = damage(uri, "id-bits")
    ckpt = str(checkpoint)
    in_process = {
        "search": [
            "search",
            "--run",
            ckpt,
            "--data",
            str(uri),
            "a red",
            "--modality",
            "text",
            "--device",
            "cpu",
        ],
        "eval": ["eval", "--run", ckpt, "--data", str(uri), "--device", "cpu"],
    }
    outcomes = {}
    for verb, args in in_process.items():
        with pytest.raises(SystemExit) as caught:
            main(args)
        outcomes[verb] = (caught.value.code, capfd.readouterr().err)
    pretrain = ("pretrain", "--data", uri, "--run", tmp_path / "r", "--model", "tiny", "--max-steps", "1")
    result = mmpt(*pretrain, "--batch-size", "8")
    outcomes["pretrain"] = (result.returncode, result.stderr)
    for verb, (code, err) in outcomes.items():
        assert code == 1, (verb, err[-2000:])
        assert "Traceback" not in err and "panicked" not in err, err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, (verb, err[-2000:])  # (a progress bar may close after it)
        assert named in errors[0] and f"--repair {uri}" in errors[0], (verb, errors[0])
        fault_tally.record("corruptions", 1)


def test_dataset_reads_name_the_damaged_file_and_leave_other_errors_alone(template, tmp_path):
    from mmpt.errors import DataError
    from mmpt.store.dataset import open_dataset

    uri = tmp_path / "d.lance"
    shutil.copytree(template, uri)
    named = damage(uri, "truncated")
    ds = open_dataset(uri)
    for read in (lambda: ds.ids(), lambda: ds.take(range(60), columns=["text"]), lambda: ds.split_indices()):
        with pytest.raises(DataError, match=f"{named}.*--repair"):
            read()
    with pytest.raises(BaseException) as caught:  # a caller's mistake (Lance panics) is not called damage
        ds.take([0], columns=["no_such_column"])
    assert not isinstance(caught.value, DataError)
    fault_tally.record("corruptions", 1)
