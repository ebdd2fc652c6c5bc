"""Shared pieces of the desktop-app tests: a small demo dataset and a barely trained run, built once per session."""

from __future__ import annotations

import os
import time
from pathlib import Path

_BUILT: dict[str, Path] = {}


def gui_data(root: Path) -> tuple[Path, Path]:
    """(dataset, run): a 120-row demo dataset (private: the explorer writes embedding columns into it) and a tiny
    run trained for 2 steps on it; built on the first call, shared afterwards."""
    if "data" not in _BUILT:
        import torch

        from mmpt.store.synthetic import make_demo_dataset
        from mmpt.train.pretrain import pretrain, resolve_config

        dataset = root / "gui-demo.lance"
        make_demo_dataset(dataset, n_rows=120, seed=1)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            cfg = resolve_config(
                data=str(dataset),
                model="tiny",
                max_steps=2,
                batch_size=16,
                lr=1e-3,
                device="cpu",
                seed=0,
                overrides=[
                    "train.log_every=1",
                    "data.num_workers=0",
                    "train.eval_after=false",
                    "train.val_every=0",
                ],
            )
            pretrain(cfg, root / "runs" / "base", progress=False)
        finally:
            torch.set_num_threads(threads)
        _BUILT["data"], _BUILT["run"] = dataset, root / "runs" / "base"
    return _BUILT["data"], _BUILT["run"]


def wait_until(app, condition, timeout: float = 60.0, step: float = 0.02) -> bool:
    """Process Qt events until `condition()` holds or `timeout` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(step)
    app.processEvents()
    return bool(condition())


def pid_gone(pid: int) -> bool:
    """Whether no process (or only a zombie) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")
