"""The checks .ci/run makes before the tests fail when they should: an upward import, a type error in a
public function, a lint error. Each is planted in a copy of the source, never in the tree itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """mmpt, gui and pyproject.toml copied to a temp folder (caches and bytecode left out)."""
    dest = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("mmpt", "gui"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the copy shadows the installed package
    return subprocess.run(
        [str(BIN / tool), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _plant(path: Path, text: str) -> str:
    original = path.read_text()
    path.write_text(original + text)
    return original


def test_an_upward_import_breaks_the_layer_contract(copy):
    assert _run("lint-imports", cwd=copy).returncode == 0  # the copy as it is keeps every contract
    target = copy / "mmpt" / "store" / "schema.py"
    original = _plant(
        target, "\n\ndef _uses_training() -> object:\n    from mmpt.train import loop\n\n    return loop\n"
    )
    try:
        done = _run("lint-imports", cwd=copy)
    finally:
        target.write_text(original)
    assert done.returncode != 0
    assert "mmpt.store.schema -> mmpt.train.loop" in done.stdout


def test_the_ui_may_not_reach_into_the_core(copy):
    target = copy / "gui" / "settings.py"
    original = _plant(target, "\n\nfrom mmpt.train.config import RunConfig  # noqa: E402,F401\n")
    try:
        done = _run("lint-imports", cwd=copy)
    finally:
        target.write_text(original)
    assert done.returncode != 0 and "gui is not allowed to import mmpt.train" in done.stdout


def test_a_type_error_in_a_public_function_fails_mypy(copy):
    target = copy / "mmpt" / "errors.py"
    ok = _run("mypy", "mmpt/errors.py", cwd=copy)
    assert ok.returncode == 0, ok.stdout
    original = _plant(
        target, '\n\ndef describe(code: int) -> str:\n    """A wrong return type."""\n    return code\n'
    )
    try:
        done = _run("mypy", "mmpt/errors.py", cwd=copy)
    finally:
        target.write_text(original)
    assert (
        done.returncode != 0 and 'Incompatible return value type (got "int", expected "str")' in done.stdout
    )


def test_a_lint_error_fails_ruff(copy):
    target = copy / "mmpt" / "lazy.py"
    assert _run("ruff", "check", "mmpt/lazy.py", cwd=copy).returncode == 0
    original = _plant(target, "\n\nimport os\n")
    try:
        done = _run("ruff", "check", "mmpt/lazy.py", cwd=copy)
    finally:
        target.write_text(original)
    assert done.returncode != 0 and "F401" in done.stdout


def test_unformatted_code_fails_the_format_check(copy):
    target = copy / "mmpt" / "lazy.py"
    assert _run("ruff", "format", "--check", "mmpt/lazy.py", cwd=copy).returncode == 0
    original = _plant(target, "\n\nLIMIT=( 1 )\n")
    try:
        done = _run("ruff", "format", "--check", "mmpt/lazy.py", cwd=copy)
    finally:
        target.write_text(original)
    assert done.returncode != 0 and "would be reformatted" in done.stdout
