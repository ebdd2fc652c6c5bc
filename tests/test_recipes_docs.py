"""Every recipe in datasets/ is listed in docs/datasets.md with its command, and answers --help as a script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "datasets").glob("*.py") if not p.name.startswith("_"))


def test_every_recipe_is_in_the_docs_table_with_its_command():
    docs = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    table = [line for line in docs.splitlines() if line.startswith("| `")]
    assert len(RECIPES) >= 16
    for recipe in RECIPES:
        rows = [line for line in table if line.startswith(f"| `{recipe.name}` |")]
        assert len(rows) == 1, f"{recipe.name} is not in the recipe table of docs/datasets.md"
        assert f"python datasets/{recipe.name} " in rows[0] and "--out " in rows[0]


def test_every_recipe_runs_as_a_script_with_help():
    for recipe in RECIPES:
        proc = subprocess.run(
            [sys.executable, str(recipe), "--help"], capture_output=True, text=True, check=False, cwd=ROOT
        )
        assert proc.returncode == 0, f"{recipe.name}: {proc.stderr[-500:]}"
        assert "--out" in proc.stdout and "--overwrite" in proc.stdout, recipe.name
