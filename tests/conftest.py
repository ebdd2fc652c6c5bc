"""Shared fixtures: a small demo dataset built once per test session in a temp folder."""

from __future__ import annotations

import pytest

from mmpt.store.dataset import MmptDataset
from mmpt.store.synthetic import make_demo_dataset

DEMO_ROWS = 300


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> MmptDataset:
    """A 300-row demo dataset (seed 0) shared read-only by every test in the session."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo.lance", n_rows=DEMO_ROWS, seed=0)


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory):
    """40 demo rows as media files plus manifest.csv (read-only: copy before corrupting anything)."""
    from mmpt.store.synthetic import write_demo_files

    return write_demo_files(tmp_path_factory.mktemp("demo_files"), n_rows=40, seed=0)
