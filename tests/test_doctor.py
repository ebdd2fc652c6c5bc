"""Fresh installs: the torch trio is pinned exactly and loads, `mmpt doctor` reports, and a broken
torchaudio is one line with the fix, before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from mmpt.binaries import PINS, diagnose_load_error, pin_mismatches

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {d.split("==")[0].strip(): d.split("==")[1].strip() for d in deps if "==" in d}


def test_pyproject_pins_the_trio_exactly_and_the_installed_trio_matches():
    required = _requirements()
    for name, pinned in PINS.items():
        assert required.get(name) == pinned, f"pyproject must pin {name}=={pinned} exactly"
    assert pin_mismatches() == []  # fails the day an install drifts from the pins


def test_constraints_file_agrees_with_the_pins():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pinned = dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))
    for name, version in PINS.items():
        assert pinned[name].split("+")[0] == version


def test_torchaudio_compiled_ops_load_and_run():
    import torch
    import torchaudio.functional as F
    import torchaudio.transforms as T
    from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE

    assert _IS_TORCHAUDIO_EXT_AVAILABLE
    wave = torch.sin(torch.linspace(0, 2000, 16_000)).unsqueeze(0)
    mel = T.MelSpectrogram(sample_rate=16_000, n_mels=32)(wave)
    assert mel.shape[1] == 32 and torch.isfinite(mel).all()
    assert F.resample(wave, 16_000, 8_000).shape[-1] == 8_000


def _mmpt(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmpt", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_doctor_json_reports_no_problem_here():
    done = _mmpt("doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert {
        "python",
        "versions",
        "torchaudio_ops",
        "cuda",
        "soundfile_formats",
        "threads",
        "extras",
        "problems",
        "notes",
        "ok",
        "seconds",
    } <= set(report)
    assert report["ok"] is True and report["problems"] == []
    assert report["versions"]["torchaudio"] == PINS["torchaudio"] and report["torchaudio_ops"] is True
    assert {"WAV", "FLAC", "OGG"} <= set(report["soundfile_formats"])
    assert set(report["extras"]) >= {"notebook", "hf", "projections", "gui", "ray"}
    assert report["threads"]["torch_threads"] >= 1 and report["cuda"]["available"] in (True, False)


def _broken_torchaudio(root: Path) -> dict[str, str]:
    """A `torchaudio` 2.11.1 ahead on the path that fails to load the way the real mismatched wheel does."""
    pkg = root / "torchaudio"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "try:\n"
        "    raise OSError('/x/torchaudio/lib/libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace')\n"
        "except OSError as e:\n"
        "    raise OSError('Could not load this library: /x/torchaudio/lib/libtorchaudio.so') from e\n"
    )
    info = root / "torchaudio-2.11.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n")
    return {**os.environ, "PYTHONPATH": str(root)}


def test_broken_torchaudio_is_one_line_with_the_fix_and_nothing_written(tmp_path):
    from mmpt.store.synthetic import make_demo_dataset

    data = tmp_path / "d.lance"
    make_demo_dataset(data, n_rows=40)
    env = _broken_torchaudio(tmp_path / "site")
    for args, written in (
        (
            ["pretrain", "--data", str(data), "--run", str(tmp_path / "run"), "--model", "tiny"],
            tmp_path / "run",
        ),
        (["demo", "--out", str(tmp_path / "demo")], tmp_path / "demo"),
    ):
        done = _mmpt(*args, env=env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: torchaudio's compiled library does not load"), lines[0]
        assert "undefined symbol torch_exception_get_what_without_backtrace" in lines[0]
        assert "torchaudio 2.11.1 is installed" in lines[0] and "pip install torch==2.11.0" in lines[0]
        assert "mmpt doctor" in lines[0] and "Traceback" not in done.stderr
        assert not written.exists()

    done = _mmpt("doctor", "--json", env=env)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["torchaudio_ops"] is False
    assert any("torchaudio 2.11.1" in p and "fix: pip install" in p for p in report["problems"])
    assert any("does not load" in p for p in report["problems"])


def test_diagnosis_leaves_other_errors_alone():
    assert diagnose_load_error(ValueError("bad value")) is None
    assert diagnose_load_error(ImportError("No module named 'umap'")) is None
    line = diagnose_load_error(
        RuntimeError("PyTorch and TorchAudio were compiled with different CUDA versions.")
    )
    assert line is not None and "fix: pip install torch==2.11.0" in line
