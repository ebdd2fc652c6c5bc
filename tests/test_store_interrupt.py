"""Ctrl-C in the middle of an ingest (signal to the whole process group, as a terminal sends it) leaves the
previous dataset version intact, and a first ingest leaves no folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd

from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest

SCRIPT = textwrap.dedent("""
    import sys, time
    import mmpt.store.ingest as m
    real = m.rows_to_batch
    def slow(rows, schema):
        print("batch", flush=True)
        time.sleep(0.3)
        return real(rows, schema)
    m.rows_to_batch = slow
    from mmpt.cli import main
    main(["ingest", sys.argv[1], "--out", sys.argv[2], "--batch-rows", "4", "-q", *sys.argv[3:]])
""")


def interrupt_ingest(manifest, out, extra: list[str]) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(manifest), str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line.strip() == "batch"
    assert seen == 3, proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ctrl_c_mid_ingest_keeps_the_previous_version(demo_files, tmp_path):
    out = tmp_path / "k.lance"
    ingest(demo_files, out, quiet=True)
    more = tmp_path / "more.csv"
    frame = pd.read_csv(demo_files, keep_default_na=False)
    frame["id"] = "more-" + frame["id"]
    for col in ("image", "audio"):
        frame[col] = [str(demo_files.parent / v) if v else "" for v in frame[col]]
    frame.to_csv(more, index=False)

    code, err = interrupt_ingest(more, out, ["--append", "--workers", "2"])  # workers get the signal too
    assert code == 130, err
    assert err.strip().splitlines()[-1] in ("aborted", "interrupted") and "Traceback" not in err
    ds = open_dataset(out)
    assert (ds.version, len(ds)) == (1, 40)

    fresh = tmp_path / "fresh.lance"
    code, err = interrupt_ingest(more, fresh, ["--workers", "1"])
    assert code == 130, err
    assert not fresh.exists()
