"""`mmpt ingest --ray`: rows validated and decoded as Ray Data tasks, written by lance-ray, committed once.

The driver reads the source (a manifest holds paths, not blobs) and checks its ids; each Ray task runs the
single-process path's own per-row checks (`mmpt.store.ready.check_ready_chunk`) on a chunk, writes the good
rows as Lance data files with lance-ray's `write_fragment`, and hands back only their fragment metadata and
its rejections. The driver then commits every fragment, in source order, as one Lance version under the
write lock (`mmpt.store.write`), so a failed task leaves the previous version as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pickle
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lance
import pyarrow as pa

from mmpt.errors import DataError
from mmpt.store.dataset import MmptDataset, report_path_for
from mmpt.store.ingest import (
    IngestResult,
    _check_not_added,
    _check_unique,
    _progress,
    _report,
    _write_report,
    ids_added_since,
    plan_ingest,
    rejection_line,
)
from mmpt.store.limits import read_limits
from mmpt.store.manifest import ColumnNames
from mmpt.store.ready import ReadyOptions, check_ready_chunk
from mmpt.store.validate import CheckOptions
from mmpt.store.write import _discard, _remove_if_new, commit_locked, rows_to_batch

WAVE_ROWS = 1 << 20  # source rows handed to Ray per pass: bounds the driver's memory, not the commit count
FAIL_ROW = "MMPT_TEST_RAY_FAIL_ROW"  # test hook: the task holding this input row raises
KILL_ROW = "MMPT_TEST_RAY_KILL_ROW"  # test hook "ROW:MARKER": that task's first attempt kills its worker


def connect(address: str | None = None, *, quiet: bool = False) -> None:
    """Join the Ray cluster at `address` ("auto", "ray://host:10001", "host:6379"), or start a local one for
    None / "local"; a session already open in this process is reused."""
    try:
        import ray
    except ImportError:
        raise DataError("--ray needs Ray and lance-ray: pip install 'mmpt[ray]'") from None
    from ray.data import DataContext

    # Ray Data logs every pass at INFO; keep its warnings (and, unless quiet, its task errors)
    logging.getLogger("ray.data").setLevel(logging.CRITICAL if quiet else logging.WARNING)
    DataContext.get_current().enable_progress_bars = not quiet
    if ray.is_initialized():
        return
    local = address in (None, "", "local")
    try:
        ray.init(
            address=None if local else address,
            include_dashboard=False,
            log_to_driver=not quiet,
            configure_logging=True,
            logging_level=logging.ERROR if quiet else logging.WARNING,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise DataError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from None


@dataclass(frozen=True)
class _TaskSpec:
    """What every Ray task needs besides its rows (pickled once per task)."""

    uri: str
    schema: pa.Schema
    options: CheckOptions
    ready: ReadyOptions
    storage_options: dict[str, str] | None
    fail_row: int | None
    kill: tuple[int, str] | None


def ray_ingest(
    source: Any,
    out: str | Path,
    *,
    address: str | None = None,
    split_ratios: str | tuple[float, float, float] | None = None,
    append: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    batch_rows: int = 256,
    quiet: bool = False,
    storage_options: dict[str, str] | None = None,
    max_blob_mb: float | None = None,
    max_pixels: int | None = None,
    max_text_kb: float | None = None,
    max_audio_seconds: float | None = None,
    max_audio_samples: int | None = None,
    follow_symlinks: bool = False,
    image_max_side: int | None = None,
    audio_rate: int | None = None,
    drop_originals: bool = False,
    wave_rows: int = WAVE_ROWS,
    **column_options: str | None,
) -> IngestResult:
    """`mmpt.store.ingest.ingest` on a Ray cluster: the same rows, report and single commit.

    `column_options` are ingest's `<role>_col` options (id_col, text_col, ...: `ColumnNames` fields).
    Each task validates `batch_rows` rows and writes its good ones as one fragment. Files a task reads must
    be reachable from every worker (shared storage or object-store URIs). A failed task fails the ingest
    with nothing committed; its written files stay as orphans on object stores (removed locally).
    """
    started = time.perf_counter()
    if batch_rows < 1 or wave_rows < 1:
        raise DataError("batch rows must be at least 1")
    limits = read_limits(
        max_blob_mb=max_blob_mb,
        max_pixels=max_pixels,
        max_text_kb=max_text_kb,
        max_audio_seconds=max_audio_seconds,
        max_audio_samples=max_audio_samples,
        follow_symlinks=follow_symlinks,
    )
    plan = plan_ingest(
        source,
        out,
        column_names(column_options),
        limits,
        ReadyOptions(image_max_side, audio_rate, drop_originals),
        append=append,
        overwrite=overwrite,
        split_ratios=split_ratios,
        storage_options=storage_options,
    )
    src, uri, mode, existing_ids, base = plan.src, plan.uri, plan.mode, plan.existing_ids, plan.base
    connect(address, quiet=quiet)

    spec = _TaskSpec(
        uri=uri,
        schema=plan.schema,
        options=plan.options,
        ready=plan.ready,
        storage_options=storage_options,
        fail_row=_int_env(FAIL_ROW),
        kill=_kill_env(),
    )
    local = "://" not in uri
    existed = Path(uri).exists() if local else True
    seen: dict[str, int] = {}
    kept: set[str] = set()
    counts = {"read": 0, "written": 0}
    rejected: list[dict[str, Any]] = []
    fragments: list[lance.FragmentMetadata] = []
    progress = _progress(src, quiet)
    try:
        for wave in _waves(src.chunks(batch_rows), wave_rows):
            for chunk in wave:
                for row in chunk:
                    _check_unique(row, seen, existing_ids, uri)
                counts["read"] += len(chunk)
            for result in _run_wave(wave, spec, progress):
                fragments.extend(result["fragments"])
                counts["written"] += result["written"]
                kept.update(result["ids"])
                rejected.extend(result["rejected"])
                if strict and result["rejected"]:
                    first = result["rejected"][0]
                    raise DataError(f"{rejection_line(first)} (--strict: nothing written)")
    except BaseException:
        _discard_fragments(uri, fragments, local, existed)
        raise
    finally:
        progress.close()

    report_path = report_path_for(uri)
    if counts["read"] == 0:
        raise DataError(f"source is empty: {src.name} has no rows")
    if counts["written"] == 0:
        _remove_if_new(uri, local, existed)
        report = _report(src, uri, mode, None, counts, rejected, time.perf_counter() - started)
        _write_report(report_path, report, storage_options)
        raise DataError(f"no valid rows: all {counts['read']:,} rows were rejected; see {report_path}")

    def check(latest: lance.LanceDataset | None) -> None:
        if base is not None and latest is not None:
            _check_not_added(ids_added_since(base, latest), kept, seen, uri)

    lance_ds = commit_fragments(
        uri,
        fragments,
        plan.schema,
        mode=mode,
        read_version=None if base is None else base.version,
        storage_options=storage_options,
        check=check,
        what="ingest --ray --append" if append else "ingest --ray",
        existed=existed,
    )
    dataset = MmptDataset(lance_ds, uri, storage_options)
    seconds = time.perf_counter() - started
    _write_report(
        report_path, _report(src, uri, mode, dataset.version, counts, rejected, seconds), storage_options
    )
    return IngestResult(
        dataset=dataset,
        read=counts["read"],
        written=counts["written"],
        rejected=rejected,
        report_path=report_path,
        seconds=seconds,
    )


def column_names(options: dict[str, str | None]) -> ColumnNames:
    """`ColumnNames` from ingest's `<role>_col` keyword options; an unknown option is a one-line error."""
    roles = {f"{f.name}_col": f.name for f in dataclasses.fields(ColumnNames)}
    unknown = sorted(set(options) - set(roles))
    if unknown:
        raise DataError(f"ingest --ray does not take {', '.join(unknown)}")
    return ColumnNames(**{roles[k]: v for k, v in options.items()})


def ray_ingest_command(address: str) -> Callable[..., IngestResult]:
    """`ingest` as the CLI calls it, run on the Ray cluster at `address` ("local": a local one); --workers is
    refused (Ray schedules the tasks on the cluster's CPUs)."""

    def run(source: Any, out: str | Path, *, workers: int | None = None, **options: Any) -> IngestResult:
        if workers is not None:
            raise DataError(
                "--workers is for the single-process path; with --ray, Ray uses the cluster's CPUs"
            )
        return ray_ingest(source, out, address=address, **options)

    return run


def commit_fragments(
    uri: str,
    fragments: list[lance.FragmentMetadata],
    schema: pa.Schema,
    *,
    mode: str,
    read_version: int | None,
    storage_options: dict[str, str] | None,
    check: Any = None,
    what: str = "write",
    existed: bool = True,
) -> lance.LanceDataset:
    """Commit fragments written elsewhere (Ray tasks) as one version, through the store's locked commit."""
    operation = (
        lance.LanceOperation.Append(fragments)
        if mode == "append"
        else lance.LanceOperation.Overwrite(schema, fragments)
    )
    transaction = lance.Transaction(read_version=read_version or 0, operation=operation)
    local = "://" not in uri
    return commit_locked(uri, transaction, mode, read_version, check, storage_options, what, local, existed)


def _waves(chunks: Iterator[list[dict[str, Any]]], wave_rows: int) -> Iterator[list[list[dict[str, Any]]]]:
    """Group the source's chunks into passes of about `wave_rows` rows."""
    wave: list[list[dict[str, Any]]] = []
    rows = 0
    for chunk in chunks:
        wave.append(chunk)
        rows += len(chunk)
        if rows >= wave_rows:
            yield wave
            wave, rows = [], 0
    if wave:
        yield wave


def _run_wave(wave: list[list[dict[str, Any]]], spec: _TaskSpec, progress: Any) -> list[dict[str, Any]]:
    """One Ray Data pass over a wave's chunks; the task results in chunk order."""
    import ray
    import ray.data

    items = [{"task": i, "rows": pickle.dumps(chunk)} for i, chunk in enumerate(wave)]
    ray_ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        functools.partial(_validate_and_write, spec=spec),
        batch_size=1,
        batch_format="pyarrow",
    )
    results: list[dict[str, Any]] = []
    try:
        for row in ray_ds.iter_rows():
            result = {
                "task": row["task"],
                "fragments": pickle.loads(row["fragments"]),
                "rejected": json.loads(row["rejected"]),
                "ids": json.loads(row["ids"]),
                "written": row["written"],
            }
            results.append(result)
            progress.update(row["read"])
    except ray.exceptions.RayError as exc:
        for result in results:  # files of the tasks that finished: nothing will reference them
            _discard_fragments(spec.uri, result["fragments"], "://" not in spec.uri, existed=True)
        raise DataError(f"a Ray ingest task failed, so nothing was written: {_task_error(exc)}") from None
    return sorted(results, key=lambda r: r["task"])


def _validate_and_write(batch: pa.Table, spec: _TaskSpec) -> pa.Table:
    """Ray task: validate each chunk of the batch, write its good rows as one fragment, return metadata."""
    from lance_ray.fragment import write_fragment

    out: dict[str, list[Any]] = {k: [] for k in ("task", "fragments", "rejected", "ids", "read", "written")}
    for task, blob in zip(batch.column("task").to_pylist(), batch.column("rows").to_pylist(), strict=True):
        rows = pickle.loads(blob)
        _test_hooks(rows, spec)
        good, rejected = [], []
        for result in check_ready_chunk((rows, spec.options, spec.ready)):
            if "rejected" in result:
                rejected.append(rejection_item(result))
            else:
                good.append(result)
        fragments = []
        if good:
            table = pa.Table.from_batches([rows_to_batch(good, spec.schema)])
            written = write_fragment(
                [table], spec.uri, schema=spec.schema, storage_options=spec.storage_options
            )
            fragments = [fragment for fragment, _ in written]
        out["task"].append(task)
        out["fragments"].append(pickle.dumps(fragments))
        out["rejected"].append(json.dumps(rejected, ensure_ascii=False))
        out["ids"].append(json.dumps([r["id"] for r in good], ensure_ascii=False))
        out["read"].append(len(rows))
        out["written"].append(len(good))
    return pa.table(
        {
            "task": pa.array(out["task"], pa.int64()),
            "fragments": pa.array(out["fragments"], pa.binary()),
            "rejected": pa.array(out["rejected"], pa.string()),
            "ids": pa.array(out["ids"], pa.string()),
            "read": pa.array(out["read"], pa.int64()),
            "written": pa.array(out["written"], pa.int64()),
        }
    )


def rejection_item(result: dict[str, Any]) -> dict[str, Any]:
    """A rejected row as the report lists it (the single-process path's fields, in its order)."""
    return {
        "row": result["row"],
        "id": result["id"],
        "source": result["source"],
        "modality": result.get("modality"),
        "file": result.get("file"),
        "kind": result["rejected"],
        "reason": result["reason"],
    }


def _test_hooks(rows: list[dict[str, Any]], spec: _TaskSpec) -> None:
    """The fault tests' hooks: fail the task holding a chosen row, or kill its worker on the first attempt."""
    numbers = {row.get("row") for row in rows}
    if spec.fail_row is not None and spec.fail_row in numbers:
        raise RuntimeError(f"injected failure at row {spec.fail_row} ({FAIL_ROW})")
    if spec.kill is not None and spec.kill[0] in numbers:
        marker = Path(spec.kill[1])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)


def _discard_fragments(uri: str, fragments: list[Any], local: bool, existed: bool) -> None:
    if fragments:
        transaction = lance.Transaction(read_version=0, operation=lance.LanceOperation.Append(fragments))
        _discard(uri, transaction, local, existed)
    else:
        _remove_if_new(uri, local, existed)


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _kill_env() -> tuple[int, str] | None:
    value = os.environ.get(KILL_ROW)
    if not value:
        return None
    row, _, marker = value.partition(":")
    return int(row), marker


def _task_error(exc: BaseException) -> str:
    """The user's reason inside a Ray task error (the "Type: message" line of its traceback), without Ray's
    own frames."""
    lines = [line.strip() for line in str(exc).splitlines()]
    reasons = [line for line in lines if _REASON.match(line) and "UserCodeException" not in line]
    return reasons[0] if reasons else _first_line(exc)


_REASON = re.compile(r"^([A-Za-z_][\w.]*)?(Error|Exception|Interrupt)\b.*: ")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
