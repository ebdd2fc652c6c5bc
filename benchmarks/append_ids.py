"""The cost of the append id check: rows/s of appends with and without it; prints one JSON object.

    python benchmarks/append_ids.py [--base-rows 100000] [--rows 10000] [--rounds 5]

A text-only dataset of --base-rows rows receives --rows new rows per append, three ways, alternating per
round (medians over rounds):
- `unchecked`: the bare write path (`write_batches` in append mode: data files, write lock, commit);
- `checked`: what `ingest --append` adds for id uniqueness: read the ids already there, check every new
  id against them, and under the lock re-check the ids another writer added since (none here);
- `checked_after_other_writer`: the same while another writer appended --rows rows between the plan and
  the commit, so the commit-time check reads that writer's fragment.
`check_s` splits the check into its parts; `ingest_append_rows_per_s` is the whole `mmpt.ingest(...,
append=True)` of a DataFrame (validation included) for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa


def text_batches(prefix: str, n: int, schema: pa.Schema, batch: int = 8192) -> list[pa.RecordBatch]:
    """n text-only rows with ids `<prefix>-<i>`, as write batches of the dataset's schema."""
    from mmpt.store.write import rows_to_batch

    rows = [{"id": f"{prefix}-{i:08d}", "text": f"caption number {i}", "split": "train"} for i in range(n)]
    return [rows_to_batch(rows[i : i + batch], schema) for i in range(0, n, batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-rows", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=10_000, help="rows per append")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import lance
    import pandas as pd

    from mmpt.errors import DataError
    from mmpt.store.ingest import ids_added_since, ingest, read_ids
    from mmpt.store.schema import base_schema
    from mmpt.store.write import write_batches

    schema = base_schema()
    timings: dict[str, list[float]] = {"unchecked": [], "checked": [], "checked_after_other_writer": []}
    parts: dict[str, list[float]] = {
        "read_ids_s": [],
        "membership_s": [],
        "commit_check_s": [],
        "commit_check_after_other_writer_s": [],
    }
    ingest_rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        uri = str(Path(tmp) / "bench.lance")
        write_batches(iter(text_batches("base", args.base_rows, schema)), uri, schema, mode="create")
        counter = iter(range(10**9))

        def unchecked() -> float:
            batches = text_batches(f"u{next(counter)}", args.rows, schema)
            t0 = time.perf_counter()
            base = lance.dataset(uri)
            write_batches(iter(batches), uri, schema, mode="append", read_version=base.version)
            return time.perf_counter() - t0

        def checked(other_writer: bool) -> Callable[[], float]:
            key = "commit_check_after_other_writer_s" if other_writer else "commit_check_s"

            def run() -> float:
                batches = text_batches(f"c{next(counter)}", args.rows, schema)
                t0 = time.perf_counter()
                base = lance.dataset(uri)
                existing = set(read_ids(base, uri).to_pylist())
                t1 = time.perf_counter()
                new_ids = [i for b in batches for i in b.column("id").to_pylist()]
                clash = [i for i in new_ids if i in existing]
                if clash or len(set(new_ids)) != len(new_ids):
                    raise DataError("duplicate ids in the benchmark's own rows")
                t2 = time.perf_counter()
                parts["read_ids_s"].append(t1 - t0)
                parts["membership_s"].append(t2 - t1)
                if other_writer:  # (not timed: another process's work)
                    other = text_batches(f"o{next(counter)}", args.rows, schema)
                    write_batches(iter(other), uri, schema, mode="append")
                t3 = time.perf_counter()
                kept = set(new_ids)

                def check(latest: lance.LanceDataset | None) -> None:
                    t = time.perf_counter()
                    added = (
                        ids_added_since(base, latest)
                        if latest is not None
                        else pa.chunked_array([], pa.string())
                    )
                    if set(added.to_pylist()) & kept:
                        raise DataError("another writer added some of these ids")
                    parts[key].append(time.perf_counter() - t)

                write_batches(
                    iter(batches), uri, schema, mode="append", read_version=base.version, check=check
                )
                return (t2 - t0) + (time.perf_counter() - t3)

            return run

        variants = {
            "unchecked": unchecked,
            "checked": checked(False),
            "checked_after_other_writer": checked(True),
        }
        for _ in range(args.rounds):
            for name, run in variants.items():
                timings[name].append(run())
            n = next(counter)
            frame = pd.DataFrame(
                {"id": [f"i{n}-{i:08d}" for i in range(args.rows)], "text": ["a caption"] * args.rows}
            )
            t0 = time.perf_counter()
            ingest(frame, uri, append=True, quiet=True, workers=1)
            ingest_rates.append(args.rows / (time.perf_counter() - t0))
        final_rows = lance.dataset(uri).count_rows()

    rates = {name: args.rows / statistics.median(seconds) for name, seconds in timings.items()}
    print(
        json.dumps(
            {
                "base_rows": args.base_rows,
                "rows_per_append": args.rows,
                "rounds": args.rounds,
                "final_rows": final_rows,
                "rows_per_s": {k: round(v, 1) for k, v in rates.items()},
                "checked_over_unchecked": round(rates["checked"] / rates["unchecked"], 3),
                "check_s": {k: round(statistics.median(v), 4) for k, v in parts.items() if v},
                "ingest_append_rows_per_s": round(statistics.median(ingest_rates), 1),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            }
        )
    )


if __name__ == "__main__":
    main()
