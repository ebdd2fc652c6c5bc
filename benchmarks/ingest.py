"""Ingest and blob read-back throughput on demo data; prints one JSON object.

    python benchmarks/ingest.py [--rows 10000] [--workers 2]

Builds demo rows as files plus a CSV manifest in a temp folder, times `mmpt ingest` (validation on, in a
process pool), then times reading every blob back in order and in random 256-row batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40, help="random 256-row batches to read")
    args = parser.parse_args()

    from mmpt.store.dataset import open_dataset
    from mmpt.store.synthetic import write_demo_files

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        manifest = write_demo_files(tmp_path / "files", args.rows)
        files_s = time.perf_counter() - t0

        out = tmp_path / "bench.lance"
        cmd = [
            sys.executable,
            "-m",
            "mmpt",
            "ingest",
            str(manifest),
            "--out",
            str(out),
            "--workers",
            str(args.workers),
            "--quiet",
            "--json",
        ]
        load_before = os.getloadavg()[0]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        ingest_s = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ingest_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        if proc.returncode != 0:
            sys.exit(f"ingest failed: {proc.stderr.strip()}")
        summary = json.loads(proc.stdout)

        ds = open_dataset(out)
        n = len(ds)
        t0 = time.perf_counter()
        read_bytes = 0
        for start in range(0, n, 1024):
            positions = range(start, min(n, start + 1024))
            for modality in ("image", "audio"):
                read_bytes += sum(len(b) for b in ds.read_blobs(modality, positions) if b is not None)
        readback_s = time.perf_counter() - t0

        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(args.batches):
            positions = np.sort(rng.choice(n, size=min(256, n), replace=False))
            for modality in ("image", "audio"):
                ds.read_blobs(modality, positions)
        random_s = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "rows": summary["written"],
                "workers": args.workers,
                "ingest_rows_per_s": round(summary["read"] / ingest_s, 1),
                "ingest_rows_per_s_in_process": summary["rows_per_s"],
                "ingest_seconds_wall": round(ingest_s, 2),
                # CPU seconds of the ingest process and its workers: comparable across loaded and idle machines.
                "ingest_cpu_ms_per_row": round(1e3 * ingest_cpu / summary["read"], 3),
                "ingest_rows_per_s_cpu_bound_2_cores": round(2 * summary["read"] / ingest_cpu, 1),
                "readback_rows_per_s": round(n / readback_s, 1),
                "readback_mb_per_s": round(read_bytes / readback_s / 1e6, 1),
                "random_batch_rows_per_s": round(args.batches * min(256, n) / random_s, 1),
                "files_written_s": round(files_s, 2),
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_avg_1min_before": round(load_before, 2),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
