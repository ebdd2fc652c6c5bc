"""`mmpt ingest` / `mmpt.ingest`: stream a source through validation into one atomic Lance commit, with a report.

Every input row ends up either written or listed in `<name>.report.json` next to the dataset with its reason.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lance
import pyarrow as pa
import pyarrow.compute as pc

from mmpt.errors import DataError
from mmpt.store.dataset import MmptDataset, open_lance, report_path_for
from mmpt.store.limits import ReadLimits, read_limits
from mmpt.store.manifest import ColumnNames, Source, open_source
from mmpt.store.pool import default_workers, ordered_map
from mmpt.store.ready import ReadyOptions, check_ready_chunk, with_ready_columns
from mmpt.store.ready import check_schema as check_ready_schema
from mmpt.store.schema import ID, base_schema
from mmpt.store.splits import parse_ratios
from mmpt.store.validate import CheckOptions
from mmpt.store.write import check_append_schema, rows_to_batch, write_batches

if TYPE_CHECKING:
    from tqdm import tqdm

SMALL_INPUT = 1000  # below this many rows the process pool costs more than it saves


@dataclass
class IngestResult:
    """What an ingest did: the dataset it produced, its counts and where the report is."""

    dataset: MmptDataset
    read: int
    written: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)  # rows kept with a caveat (e.g. no audio track)
    report_path: str | None = None
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def summary(self, limit: int | None = 5) -> str:
        """The on-screen summary: counts, rejections by kind, the first `limit` rejected rows (None: all), the report."""
        lines = [
            f"ingested {self.written:,} of {self.read:,} rows into {self.dataset.uri} "
            f"(version {self.dataset.version}) in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s)"
        ]
        if self.rejected:
            kinds = Counter(r["kind"] for r in self.rejected)
            lines.append(
                f"rejected {len(self.rejected):,}: " + ", ".join(f"{k} {n:,}" for k, n in kinds.most_common())
            )
            shown = self.rejected if limit is None else self.rejected[:limit]
            for item in shown:
                lines.append(f"  {rejection_line(item)}")
            if len(shown) < len(self.rejected):
                lines.append(f"  ... {len(self.rejected) - len(shown):,} more")
        if self.notes:
            kinds = Counter(n["kind"] for n in self.notes)
            lines.append(
                f"kept with a note {len(self.notes):,}: "
                + ", ".join(f"{k} {n:,}" for k, n in kinds.most_common())
            )
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


def rejection_line(item: dict[str, Any]) -> str:
    """One rejected row on one line, naming the file (or column) that failed: `row 11 (id) audio FILE: reason`."""
    where = f" {item['modality']} {item['file']}" if item.get("file") else ""
    return f"row {item['row']} ({item['id']}){where}: {item['reason']}"


def ingest(
    source: Any,
    out: str | Path,
    *,
    id_col: str | None = None,
    text_col: str | None = None,
    image_col: str | None = None,
    audio_col: str | None = None,
    label_col: str | None = None,
    split_col: str | None = None,
    texts_col: str | None = None,
    labels_col: str | None = None,
    video_col: str | None = None,
    split_ratios: str | tuple[float, float, float] | None = None,
    append: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    workers: int | None = None,
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
) -> IngestResult:
    """Validate and write a manifest, folder tree, DataFrame or HF Dataset into the Lance dataset `out`.

    Bad rows are skipped and reported (`strict` raises on the first one and writes nothing); duplicate ids,
    inside the input or against the rows already there on `append`, are refused. The `max_*` read limits and
    `follow_symlinks` are those of `mmpt.store.limits.ReadLimits` (None: its default; docs/data-safety.md).
    `image_max_side` / `audio_rate` also store training-ready copies (downscaled JPEG, mono FLAC at that rate)
    beside the originals, or instead of them with `drop_originals` (mmpt.store.ready).
    """
    started = time.perf_counter()
    columns = ColumnNames(
        id=id_col,
        text=text_col,
        image=image_col,
        audio=audio_col,
        label=label_col,
        split=split_col,
        texts=texts_col,
        labels=labels_col,
        video=video_col,
    )
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
        columns,
        limits,
        ReadyOptions(image_max_side, audio_rate, drop_originals),
        append=append,
        overwrite=overwrite,
        split_ratios=split_ratios,
        storage_options=storage_options,
    )
    src, out, mode, schema = plan.src, plan.uri, plan.mode, plan.schema
    existing_ids, base, options, ready = plan.existing_ids, plan.base, plan.options, plan.ready

    counts = {"read": 0, "written": 0}
    rejected: list[dict[str, Any]] = []
    noted: list[dict[str, Any]] = []  # kept rows with something the user should know (a video without audio)
    progress = _progress(src, quiet)
    seen: dict[str, int] = {}  # id -> input row, of every row read
    kept: set[str] = set()  # ids of the rows written

    def batches() -> Iterator[pa.RecordBatch]:
        def tasks() -> Iterator[tuple[list[dict[str, Any]], CheckOptions, ReadyOptions]]:
            for chunk in src.chunks(batch_rows):
                for row in chunk:
                    _check_unique(row, seen, existing_ids, out)
                counts["read"] += len(chunk)
                yield chunk, options, ready

        pending, n_workers = tasks(), workers
        if n_workers is None:
            # Peek at the first rows: a small input is validated in-process (a pool takes ~1 s to start).
            head = list(itertools.islice(pending, -(-SMALL_INPUT // batch_rows)))
            small = sum(len(task[0]) for task in head) < SMALL_INPUT
            n_workers = 1 if small else default_workers()
            pending = itertools.chain(head, pending)
        for results in ordered_map(check_ready_chunk, pending, n_workers):
            good = []
            for result in results:
                if "rejected" in result:
                    item = {
                        "row": result["row"],
                        "id": result["id"],
                        "source": result["source"],
                        "modality": result.get("modality"),
                        "file": result.get("file"),
                        "kind": result["rejected"],
                        "reason": result["reason"],
                    }
                    if strict:
                        raise DataError(f"{rejection_line(item)} (--strict: nothing written)")
                    rejected.append(item)
                else:
                    noted.extend(result.pop("notes", None) or ())
                    good.append(result)
                    kept.add(result["id"])
            progress.update(len(results))
            if good:
                counts["written"] += len(good)
                yield rows_to_batch(good, schema)
        if counts["read"] == 0:
            raise DataError(f"source is empty: {src.name} has no rows")
        if counts["written"] == 0:
            raise _AllRejected()

    def check(latest: lance.LanceDataset | None) -> None:
        # Under the write lock, right before the commit: ids another writer added since `base` was read.
        if base is not None and latest is not None:
            _check_not_added(ids_added_since(base, latest), kept, seen, out)

    report_path = report_path_for(out)
    try:
        lance_ds = write_batches(
            batches(),
            out,
            schema,
            mode=mode,
            storage_options=storage_options,
            read_version=None if base is None else base.version,
            check=check,
            what="ingest --append" if append else "ingest",
        )
    except _AllRejected:
        result_report = _report(src, out, mode, None, counts, rejected, time.perf_counter() - started, noted)
        _write_report(report_path, result_report, storage_options)
        raise DataError(
            f"no valid rows: all {counts['read']:,} rows were rejected; see {report_path}"
        ) from None
    finally:
        progress.close()

    dataset = MmptDataset(lance_ds, out, storage_options)
    seconds = time.perf_counter() - started
    _write_report(
        report_path,
        _report(src, out, mode, dataset.version, counts, rejected, seconds, noted),
        storage_options,
    )
    return IngestResult(
        dataset=dataset,
        read=counts["read"],
        written=counts["written"],
        rejected=rejected,
        notes=noted,
        report_path=report_path,
        seconds=seconds,
    )


class _AllRejected(Exception):
    """Every row was bad: abort the write (nothing to commit) but still write the report."""


@dataclass(frozen=True)
class IngestPlan:
    """What an ingest settles before reading a row (single-process or on Ray): the opened source, where and
    how it writes, the ids already there and the version they were read from, and the row checks."""

    src: Source
    uri: str
    mode: str
    schema: pa.Schema
    existing_ids: set[str]
    base: lance.LanceDataset | None
    options: CheckOptions
    ready: ReadyOptions


def plan_ingest(
    source: Any,
    out: str | Path,
    columns: ColumnNames,
    limits: ReadLimits,
    ready: ReadyOptions,
    *,
    append: bool,
    overwrite: bool,
    split_ratios: str | tuple[float, float, float] | None,
    storage_options: dict[str, str] | None,
) -> IngestPlan:
    """Check the options, open the source and decide the write (create / append / overwrite) and its schema."""
    if append and overwrite:
        raise DataError("choose either append or overwrite, not both")
    ratios = parse_ratios(split_ratios)
    src = open_source(source, columns, storage_options, follow_symlinks=limits.follow_symlinks, limits=limits)
    uri = str(out)
    mode, schema, existing_ids, base = _plan(uri, src, append, overwrite, storage_options)
    if ready.active and not ready.drop_originals and mode != "append":
        schema = with_ready_columns(schema)
    check_ready_schema(schema, ready, uri)
    options = CheckOptions(split_ratios=ratios, limits=limits, root=src.root)
    return IngestPlan(src, uri, mode, schema, existing_ids, base, options, ready)


def _plan(
    out: str, src: Source, append: bool, overwrite: bool, storage_options: dict[str, str] | None
) -> tuple[str, pa.Schema, set[str], lance.LanceDataset | None]:
    """Write mode, schema, the ids already there and the version they were read from (None: no dataset)."""
    if not _exists(out, storage_options):
        return "create", base_schema(src.metadata), set(), None  # --append to a missing dataset creates it
    current = open_lance(out, storage_options=storage_options)  # refuses a path that is not Lance
    if not (append or overwrite):
        raise DataError(f"{out} already exists; pass --append to add rows or --overwrite to replace it")
    if overwrite:
        return "overwrite", base_schema(src.metadata), set(), None
    schema = check_append_schema(current.schema, src.metadata)
    if ID not in current.schema.names:
        raise DataError(f"{out} is a Lance dataset but not an mmpt one: no id column")
    ids = set(read_ids(current, out).to_pylist())
    # Ids are NFC from this source on; one written before in another form still collides with its NFC twin.
    ids |= {unicodedata.normalize("NFC", i) for i in ids if isinstance(i, str) and not i.isascii()}
    return "append", schema, ids, current


def read_ids(ds: lance.LanceDataset, uri: str, fragments: list[Any] | None = None) -> pa.ChunkedArray:
    """The id column (of some fragments only, if given); an unreadable file is one line pointing at repair."""
    from mmpt.store.integrity import damage_error, is_read_failure

    try:
        return ds.scanner(columns=[ID], fragments=fragments).to_table().column(ID)
    except BaseException as exc:  # noqa: BLE001 - Lance panics on some corrupt files
        if not is_read_failure(exc):
            raise
        raise damage_error(uri, exc) from None


def ids_added_since(base: lance.LanceDataset, latest: lance.LanceDataset) -> pa.ChunkedArray:
    """Ids of `latest` in fragments whose id data file `base` did not have: every row added since `base`.

    Data files are immutable and uniquely named, so this reads only what other writers committed meanwhile.
    """
    if latest.version == base.version:
        return pa.chunked_array([], pa.string())
    known = _id_files(base)
    field = _id_field(latest)
    fresh = [
        f
        for f in latest.get_fragments()
        if not any(d.path in known for d in f.data_files() if field in d.fields)
    ]
    if not fresh:
        return pa.chunked_array([], pa.string())
    return read_ids(latest, latest.uri, fresh)


def _id_field(ds: lance.LanceDataset) -> int:
    """The Lance field id of the id column (its data files are the ones read for ids)."""
    field = ds.lance_schema.field(ID)
    if field is None:
        raise DataError(f"{ds.uri} is a Lance dataset but not an mmpt one: no id column")
    return field.id()


def _id_files(ds: lance.LanceDataset) -> set[str]:
    field = _id_field(ds)
    return {d.path for f in ds.get_fragments() for d in f.data_files() if field in d.fields}


def _check_not_added(added: pa.ChunkedArray, kept: set[str], seen: dict[str, int], out: str) -> None:
    if not len(added) or not kept:
        return
    clash = pc.filter(added, pc.is_in(added, value_set=pa.array(list(kept), pa.string())))
    if len(clash):
        first = clash[0].as_py()
        raise DataError(
            f"{len(clash):,} ids of this input, e.g. {first!r} (row {seen[first]}), were added to {out} by "
            f"another writer while this ingest ran; ids must be unique, so nothing was written"
        )


def _exists(out: str, storage_options: dict[str, str] | None) -> bool:
    if "://" not in out:
        path = Path(out)
        return path.exists() and not _interrupted_create(path)
    try:
        open_lance(out, storage_options=storage_options)
        return True
    except DataError:
        return False


def _interrupted_create(path: Path) -> bool:
    """A folder that a first ingest killed before its commit left: data files, no version. Ingesting into it
    creates the dataset (the orphan files stay unreferenced, as Lance leaves them after any crash)."""
    return (
        path.is_dir() and not (path / "_versions").exists() and {p.name for p in path.iterdir()} <= {"data"}
    )


def _check_unique(row: dict[str, Any], seen: dict[str, int], existing: set[str], out: str) -> None:
    row_id = row.get("id")
    if row_id is None:
        return
    if row_id in seen:
        raise DataError(
            f"duplicate id {row_id!r} in rows {seen[row_id]} and {row['row']}; ids must be unique"
        )
    if row_id in existing:
        raise DataError(f"id {row_id!r} (row {row['row']}) is already in {out}; ids must be unique")
    seen[row_id] = row["row"]


def _progress(src: Source, quiet: bool) -> tqdm:
    from tqdm.auto import tqdm

    return tqdm(
        total=src.total,
        unit="rows",
        desc=f"ingest {src.name}",
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )


def _report(
    src: Source,
    out: str,
    mode: str,
    version: int | None,
    counts: dict[str, int],
    rejected: list[dict[str, Any]],
    seconds: float,
    notes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "source": src.name,
        "dataset": out,
        "mode": mode,
        "version": version,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "totals": {"read": counts["read"], "written": counts["written"], "rejected": len(rejected)},
        "rejected_by_kind": dict(Counter(r["kind"] for r in rejected).most_common()),
        "rejected": rejected,
        "notes": notes or [],
    }


def _write_report(path: str, report: dict[str, Any], storage_options: dict[str, str] | None) -> None:
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if "://" not in path:
        Path(path).write_text(text + "\n", encoding="utf-8")
        return
    from mmpt.store.object_store import filesystem as object_filesystem

    filesystem, where = object_filesystem(path, storage_options)  # the dataset's endpoint and keys, not AWS_*
    with filesystem.open_output_stream(where) as stream:
        stream.write(text.encode("utf-8"))
