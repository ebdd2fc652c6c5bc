"""Vector search benchmark: index build time, query latency and recall@10 against exact search. Prints JSON.

    python benchmarks/search.py                      # 100k x 512, IVF_PQ with ensure_index's defaults
    python benchmarks/search.py --index-type IVF_HNSW_SQ --sweep
    python benchmarks/search.py --data hard          # clusters sharing one low-rank subspace (harder for IVF)

Vectors are a seeded mixture of Gaussians: `clusters` unit centres, each with its own low-rank spread
plus isotropic noise (like embeddings: clustered, low intrinsic dimension); queries are held-out draws
from the same mixture. The dataset uses mmpt's row schema and is written with `write_embeddings`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
from lance.blob import blob_array
from tqdm import tqdm

from mmpt.embed.columns import write_embeddings
from mmpt.embed.search import INDEX_TYPE, QUERY_PARAMS, ensure_index, index_params, search
from mmpt.store.schema import base_schema, embedding_column

COLUMN = embedding_column("bench", "image")


def mixture(n: int, dim: int, kind: str, seed: int = 0) -> np.ndarray:
    """Unit vectors from a seeded Gaussian mixture ("clustered": own subspace per cluster; "hard": shared)."""
    rng = np.random.default_rng(seed)
    clusters, rank = (200, 16) if kind == "clustered" else (500, 16)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    k = rng.integers(0, clusters, n)
    z = rng.normal(size=(n, rank)).astype(np.float32)
    if kind == "clustered":
        bases = (rng.normal(size=(clusters, rank, dim)) / np.sqrt(dim)).astype(np.float32)
        spread = np.einsum("nr,nrd->nd", z, bases[k])
        x = centres[k] + 0.5 * spread + 0.03 * rng.normal(size=(n, dim)).astype(np.float32)
    else:
        basis = (rng.normal(size=(rank, dim)) / np.sqrt(dim)).astype(np.float32)
        x = centres[k] + 0.5 * z @ basis + 0.02 * rng.normal(size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def build_dataset(path: str, vectors: np.ndarray) -> float:
    """An mmpt dataset with `vectors` in COLUMN; returns the seconds write_embeddings took."""
    n = len(vectors)
    ids = [f"r{i}" for i in range(n)]
    rows = pa.table(
        {
            "id": ids,
            "text": [f"row {i}" for i in range(n)],
            "image": blob_array([None] * n),
            "audio": blob_array([None] * n),
            "image_sha256": pa.nulls(n, pa.string()),
            "audio_sha256": pa.nulls(n, pa.string()),
            "label": [f"c{i % 10}" for i in range(n)],
            "split": [("train", "val", "test")[i % 3] for i in range(n)],
            "source": pa.nulls(n, pa.string()),
        },
        schema=base_schema(),
    )
    lance.write_dataset(rows, path, max_rows_per_file=25_000)
    start = time.perf_counter()
    write_embeddings(path, "bench", "image", ids, vectors, tag=False)
    return time.perf_counter() - start


def timed_search(ds, queries, truth, desc: str, **kwargs) -> dict[str, float]:
    """p50/p95 latency (ms, one query per call, k=10) and recall@10 against `truth`."""
    latencies, recalls = [], []
    for q, want in zip(tqdm(queries, desc=desc, leave=False), truth, strict=True):
        start = time.perf_counter()
        [hits] = search(ds, COLUMN, q, k=10, **kwargs)
        latencies.append((time.perf_counter() - start) * 1000)
        recalls.append(len({int(h.id[1:]) for h in hits} & set(want.tolist())) / 10)
    lat = np.array(latencies[3:] or latencies)  # the first calls warm caches
    return {
        "p50_ms": round(float(np.median(lat)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "recall_at_10": round(float(np.mean(recalls)), 4),
    }


def machine() -> dict:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), ""
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "pylance": lance.__version__,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", choices=["clustered", "hard"], default="clustered")
    parser.add_argument("--index-type", default=INDEX_TYPE, choices=["IVF_PQ", "IVF_HNSW_SQ"])
    parser.add_argument("--sweep", action="store_true", help="also try other query parameters")
    parser.add_argument("--workdir", help="keep the dataset here (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmpt-search-bench-"))
    path = str(work / "bench.lance")
    shutil.rmtree(path, ignore_errors=True)
    load_before = machine()["load_avg"]
    data = mixture(args.rows + args.queries, args.dim, args.data)
    vectors, queries = data[: args.rows], data[args.rows :]
    write_s = build_dataset(path, vectors)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]

    ds = lance.dataset(path)
    start = time.perf_counter()
    search(ds, COLUMN, queries[0], k=10, exact=True)  # loads the column into the exact-search cache
    exact_first_ms = (time.perf_counter() - start) * 1000
    exact = timed_search(ds, queries[:30], truth[:30], "exact (numpy)", exact=True)
    flat = []
    for q in queries[:7]:  # Lance's own exhaustive scan (no index, nothing cached)
        start = time.perf_counter()
        nearest = {"column": COLUMN, "q": q, "k": 10, "metric": "cosine", "use_index": False}
        ds.to_table(columns=["id", "_distance"], nearest=nearest)
        flat.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    name = ensure_index(path, COLUMN, threshold=0, index_type=args.index_type)
    build_s = time.perf_counter() - start
    ds = lance.dataset(path)
    indexed = timed_search(ds, queries, truth, "indexed")
    filtered = timed_search(ds, queries[:50], truth[:50], "indexed, split=train", split="train")
    report = {
        "rows": args.rows,
        "dim": args.dim,
        "data": args.data,
        "index_type": args.index_type,
        "index_name": name,
        "params": {**index_params(args.rows, args.dim, args.index_type), **QUERY_PARAMS[args.index_type]},
        "write_embeddings_s": round(write_s, 2),
        "build_s": round(build_s, 2),
        **indexed,
        "filtered_split_p50_ms": filtered["p50_ms"],
        "brute_force_p50_ms": exact["p50_ms"],
        "brute_force_first_query_ms": round(exact_first_ms, 1),
        "brute_force_recall_at_10": exact["recall_at_10"],
        "lance_flat_p50_ms": round(float(np.median(flat[2:])), 1),
        "queries": args.queries,
    }
    if args.sweep:
        probes = [{"nprobes": n, "refine_factor": 10} for n in (10, 20, 40, 96)]
        if args.index_type == "IVF_HNSW_SQ":
            probes = [{"nprobes": n, "ef": 100, "refine_factor": 10} for n in (8, 32)]
        report["sweep"] = [
            {**p, **timed_search(ds, queries[:100], truth[:100], f"sweep {p}", query_params=p)}
            for p in probes
        ]
    report["machine"] = {**machine(), "load_avg_before": load_before}
    print(json.dumps(report, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
