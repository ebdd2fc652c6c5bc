"""The README's two quick-start commands are the ones CI and users run: keep them true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_starts_with_demo_and_test_commands_using_the_constraints():
    demo, tests = _quick_start_commands()[:2]
    assert demo.endswith("&& mmpt demo") and "-c constraints.txt" in demo
    assert tests.endswith("&& python -m pytest -q") and "-c constraints.txt" in tests
    assert all(c.startswith("python3.11 -m venv .venv") for c in (demo, tests))


def test_ci_runs_exactly_the_readme_test_command():
    tests = _quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "the README's test command must appear verbatim as a line of .ci/run"
