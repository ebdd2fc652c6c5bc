"""Each notebook under notebooks/ runs top to bottom on CPU (nbclient, no widget state stored in the outputs)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart", "02_your_data", "03_finetune", "04_downstream"]


def test_every_notebook_is_listed() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OMP_NUM_THREADS", "1"
    )  # the kernel and its jobs: 2 threads thrash a loaded 2-core box
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", tmp_path)
    book = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    assert book.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), (
        "notebooks are stored clean"
    )
    started = time.monotonic()
    try:
        NotebookClient(
            book,
            timeout=600,
            kernel_name="python3",
            store_widget_state=False,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        longer = tmp_path / "quickstart" / "runs" / "longer"
        if longer.exists():  # the quickstart leaves a job training for the reader to stop
            from mmpt.jobs import attach

            attach(longer).stop(timeout=30)
    elapsed = time.monotonic() - started
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert "widgets" not in book.metadata
    assert elapsed < 600, f"{name} took {elapsed:.0f} s"
    if name == "01_quickstart":
        from mmpt.runs import run_status

        assert run_status(tmp_path / "quickstart" / "runs" / "quick")["state"] == "finished"
        assert run_status(longer)["state"] == "stopped"
        assert (tmp_path / "quickstart" / "selection.parquet").is_file()
    if name == "02_your_data":
        text = "".join(o.get("text", "") for c in book.cells for o in c.get("outputs", []))
        assert "rejected 2" in text
