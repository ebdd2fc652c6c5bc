"""Ray overhead benchmark: local-Ray ingest and embed against the single-process path on one machine. Prints JSON.

    python benchmarks/scale.py                  # 400 demo rows, tiny model, 2 Ray CPUs, 3 repeats
    python benchmarks/scale.py --rows 1000 --cpus 4 --repeats 5

1. startup: `ray.init(num_cpus=N)` of a local cluster (the first call of a process, measured once in a
   child process per repeat, so each one is a cold start).
2. ingest: `ingest` (one process) and `ray_ingest` (Ray Data tasks + lance-ray fragments, one commit) of the
   same demo manifest into fresh datasets; rows/s over the read rows, Ray already started.
3. embed: `embed_run` and `ray_embed` (lance-ray add_columns, one model replica per worker) of a tiny
   1-step run into fresh copies of one dataset; rows/s over the dataset's rows, Ray already started.

Every figure is the median of `--repeats` runs: the machine is shared, so single runs drift with its load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTUP = (
    "import time, ray; t = time.perf_counter(); ray.init(num_cpus={cpus}, include_dashboard=False, "
    "logging_level='ERROR'); print(time.perf_counter() - t); ray.shutdown()"
)


def median_of(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def startup_seconds(cpus: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", STARTUP.format(cpus=cpus)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def tiny_run(base: Path, data: Path) -> Path:
    from mmpt.train.pretrain import pretrain, resolve_config

    cfg = resolve_config(
        data=str(data),
        model="tiny",
        max_steps=1,
        batch_size=8,
        device="cpu",
        seed=0,
        overrides=["train.warmup_steps=1", "data.num_workers=0", "train.eval_after=false"],
    )
    return Path(pretrain(cfg, base / "run", progress=False).run.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=64, help="rows per Ray ingest task")
    args = parser.parse_args()

    import ray

    from mmpt.embed.api import embed_run
    from mmpt.embed.ray_embed import ray_embed
    from mmpt.store.ingest import ingest
    from mmpt.store.ray_ingest import ray_ingest
    from mmpt.store.synthetic import write_demo_files

    base = Path(tempfile.mkdtemp(prefix="mmpt-scale-"))
    try:
        startup = [startup_seconds(args.cpus) for _ in range(args.repeats)]
        manifest = write_demo_files(base / "files", n_rows=args.rows, seed=0)
        ray.init(
            num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
        )
        times: dict[str, list[float]] = {k: [] for k in ("ingest", "ray_ingest", "embed", "ray_embed")}
        for i in range(args.repeats):
            t = time.perf_counter()
            ingest(manifest, base / f"one-{i}.lance", quiet=True, batch_rows=args.batch_rows)
            times["ingest"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ray_ingest(manifest, base / f"ray-{i}.lance", quiet=True, batch_rows=args.batch_rows)
            times["ray_ingest"].append(time.perf_counter() - t)
        run = tiny_run(base, base / "one-0.lance")
        for i in range(args.repeats):
            for kind in ("embed", "ray_embed"):
                data = base / f"{kind}-{i}.lance"
                shutil.copytree(base / "one-0.lance", data)
                t = time.perf_counter()
                if kind == "embed":
                    embed_run(run, data, device="cpu", progress=False)
                else:
                    ray_embed(run, data, device="cpu", quiet=True)
                times[kind].append(time.perf_counter() - t)
        ray.shutdown()
        seconds = {k: median_of(v) for k, v in times.items()}
        rate = {k: round(args.rows / s, 1) for k, s in seconds.items()}
        print(
            json.dumps(
                {
                    "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
                    "rows": args.rows,
                    "ray_cpus": args.cpus,
                    "repeats": args.repeats,
                    "statistic": "median",
                    "ray_startup_s": median_of(startup),
                    "seconds": seconds,
                    "rows_per_s": rate,
                    "ray_overhead": {
                        "ingest": round(seconds["ray_ingest"] / seconds["ingest"], 2),
                        "embed": round(seconds["ray_embed"] / seconds["embed"], 2),
                    },
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
