"""Shared fixtures: a small demo dataset built once per test session in a temp folder, one torch thread."""

from __future__ import annotations

import pytest
import torch

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


@pytest.fixture(scope="session")
def tiny_run(demo_dataset: MmptDataset, tmp_path_factory: pytest.TempPathFactory):
    """A tiny-preset run pretrained for 60 steps on `demo_dataset` (read-only; about a minute on 2 CPU cores).

    60 steps make text -> audio/image search clearly better than chance (top-5 label precision ~0.2-0.3,
    chance 0.05); 30 steps are barely above it.
    """
    from mmpt.train.pretrain import pretrain, resolve_config

    cfg = resolve_config(
        data=str(demo_dataset.uri),
        model="tiny",
        max_steps=60,
        batch_size=32,
        lr=2e-3,
        device="cpu",
        seed=0,
        overrides=[
            "train.warmup_steps=10",
            "train.log_every=20",
            "train.ckpt_every=1000",
            "data.num_workers=0",
            "train.eval_after=false",
        ],
    )
    return pretrain(cfg, tmp_path_factory.mktemp("tiny_run") / "run", progress=False).run.path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on a loaded shared box, 2 OpenMP threads can be ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write and print the fault suite's tally (tests/artefacts/fault-summary.json) when fault tests ran."""
    from pathlib import Path

    import fault_tally

    path = fault_tally.write(Path(__file__).parent / "artefacts")
    if path is not None:
        print(f"\nfault suite: {path.read_text()}")
