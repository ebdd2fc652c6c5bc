"""Start-up: the DataLoader workers' server is a fork of the trainer when that is safe, and batches are the same."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from multiprocessing import forkserver

    from mmpt.data.loader import build_loader, worker_context
    from mmpt.models.spec import InputSpec

    worker_context()  # as the loop does: before any dataset is opened
    pid = forkserver._forkserver._forkserver_pid
    server_cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    spec = InputSpec(image_size=32, clip_samples=1600, context_length=16)
    kw = dict(train=True, seed=3, image_augment=True)
    with build_loader(sys.argv[1], spec, ["image", "text", "audio"], "train", 8, num_workers=1, **kw) as loader:
        workers = [{k: v.tolist() if hasattr(v, "tolist") else v for k, v in b.items()} for b in loader]
    alone = build_loader(sys.argv[1], spec, ["image", "text", "audio"], "train", 8, num_workers=0, **kw)
    inline = [{k: v.tolist() if hasattr(v, "tolist") else v for k, v in b.items()} for b in alone]
    print(json.dumps({
        "forked": server_cmd == Path("/proc/self/cmdline").read_bytes(),  # a fork runs this very command
        "parent": int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid(),
        "same": workers == inline,
        "batches": len(workers),
    }))
    """
)


def test_worker_server_is_a_fork_of_the_trainer_and_batches_match(demo_dataset, tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(demo_dataset.uri)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"forked": True, "parent": True, "same": True, "batches": result["batches"]}
    assert result["batches"] >= 10
    assert "fork-safe" not in proc.stderr  # Lance's warning at a fork: this fork is deliberate and safe


def test_no_fork_once_a_dataset_is_open(demo_dataset):
    """Lance's runtime threads would not survive a fork: with a dataset open here, the check says no."""
    from mmpt.data import forked_server

    demo_dataset.lance.count_rows()  # this test process has Lance's background threads running
    assert not forked_server._fork_is_safe()
