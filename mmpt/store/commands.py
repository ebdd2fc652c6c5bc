"""Click commands of the store: `mmpt ingest` and `mmpt data info|verify`."""

from __future__ import annotations

import json

import click

from mmpt.errors import DataError


@click.command("ingest")
@click.argument("source")
@click.option("--out", "-o", required=True, help="Lance dataset to create (or extend with --append).")
@click.option("--id-col", help="Column holding the unique row id (default: id; else <manifest>-<row>).")
@click.option("--text-col", help="Column holding the caption/text (default: text or caption).")
@click.option("--image-col", help="Column holding image paths/URIs/bytes (default: image or image_path).")
@click.option("--audio-col", help="Column holding audio paths/URIs/bytes (default: audio or audio_path).")
@click.option("--label-col", help="Column holding the class label (default: label).")
@click.option("--split-col", help="Column holding train/val/test (default: split; else hashed from the id).")
@click.option(
    "--split-ratios",
    default="0.8,0.1,0.1",
    show_default=True,
    help="train,val,test ratios for rows without a split.",
)
@click.option(
    "--append", is_flag=True, help="Add rows to an existing dataset as a new version (created if missing)."
)
@click.option("--overwrite", is_flag=True, help="Replace the rows of an existing dataset (a new version).")
@click.option("--strict", is_flag=True, help="Fail on the first bad row and write nothing.")
@click.option("--workers", type=click.IntRange(min=0), help="Validation processes (default: all cores).")
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Rows per validation task and write batch.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON instead of a summary.")
def ingest_command(
    source: str,
    out: str,
    id_col: str | None,
    text_col: str | None,
    image_col: str | None,
    audio_col: str | None,
    label_col: str | None,
    split_col: str | None,
    split_ratios: str,
    append: bool,
    overwrite: bool,
    strict: bool,
    workers: int | None,
    batch_rows: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """Turn a manifest (CSV, TSV, JSONL, Parquet) or a folder tree into an mmpt Lance dataset.

    Bad rows are skipped and listed with their reason in <out>.report.json (corpus.lance -> corpus.report.json).
    """
    from mmpt.store.ingest import ingest

    result = ingest(
        source,
        out,
        id_col=id_col,
        text_col=text_col,
        image_col=image_col,
        audio_col=audio_col,
        label_col=label_col,
        split_col=split_col,
        split_ratios=split_ratios,
        append=append,
        overwrite=overwrite,
        strict=strict,
        workers=workers,
        batch_rows=batch_rows,
        quiet=quiet,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dataset": result.dataset.uri,
                    "version": result.dataset.version,
                    "read": result.read,
                    "written": result.written,
                    "rejected": len(result.rejected),
                    "seconds": round(result.seconds, 3),
                    "rows_per_s": round(result.rows_per_second, 1),
                    "report": result.report_path,
                }
            )
        )
    else:
        click.echo(result.summary())


@click.group("data")
def data_group() -> None:
    """Inspect a dataset."""


@data_group.command("info")
@click.argument("dataset")
@click.option("--version", "version", help="Version number or tag to describe (default: latest).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_command(dataset: str, version: str | None, as_json: bool) -> None:
    """Rows, modalities and their combinations, splits, labels, versions, embedding columns, size on disk."""
    from mmpt.store.dataset import open_dataset
    from mmpt.store.info import format_stats

    stats = open_dataset(dataset, version=_version(version)).stats()
    click.echo(json.dumps(stats, indent=2, ensure_ascii=False) if as_json else format_stats(stats))


@data_group.command("verify")
@click.argument("dataset")
@click.option("--batch-rows", type=click.IntRange(min=1), default=1024, show_default=True)
def verify_command(dataset: str, batch_rows: int) -> None:
    """Re-hash every blob and compare with its stored sha256 (Lance keeps no payload checksum)."""
    from mmpt.store.dataset import open_dataset

    ds = open_dataset(dataset)
    n, bad = len(ds), []
    for modality in ("image", "audio"):
        for start in range(0, n, batch_rows):
            positions = range(start, min(n, start + batch_rows))
            for position, ok in zip(positions, ds.verify(modality, positions), strict=True):
                if not ok:
                    bad.append((modality, position))
    if bad:
        ids = ds.ids([p for _, p in bad[:5]])
        shown = ", ".join(f"{i} ({m})" for (m, _), i in zip(bad[:5], ids, strict=True))
        raise DataError(f"{len(bad)} blob(s) do not match their sha256: {shown}")
    click.echo(f"all blobs of {n:,} rows match their sha256")


def _version(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value
