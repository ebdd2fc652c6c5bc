"""docs/python-api.md is executed as written: ingest -> background pretrain -> stop / attach / resume ->
evaluate -> explore -> export a selection, with the checks a reader would make along the way."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.slow
def test_the_python_api_walkthrough_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = _blocks()
    assert len(blocks) >= 6
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own code

    assert namespace["result"].written == 600 and namespace["ds"].stats()["rows"] == 600
    job = namespace["job"]
    assert job.status()["state"] == "finished" and not job.is_alive()
    runs = namespace["mmpt"].list_runs("work/runs")
    assert runs.loc[0, "status"] == "finished" and runs.loc[0, "step"] == runs.loc[0, "total_steps"]
    assert (tmp_path / "work/runs/first/eval/test.json").is_file()
    assert set(namespace["report"]["zero_shot"]) == {"image", "audio"}
    points, hits = namespace["points"], namespace["hits"]
    assert set(points.modality) == {"image", "text", "audio"}
    assert namespace["card"].audio_wav[:4] == b"RIFF"
    exported = pd.read_parquet(tmp_path / "work/red-circles.parquet")
    assert sorted(exported.id) == sorted(set(hits.id)) == sorted(namespace["picked"].id)
