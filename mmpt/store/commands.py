"""Click commands of the store: `mmpt ingest` and `mmpt data info|verify`."""

from __future__ import annotations

import json

import click

from mmpt.errors import DataError
from mmpt.store.limits import DEFAULT_LIMITS


@click.command("ingest")
@click.argument("source", nargs=-1, required=True)
@click.option("--out", "-o", required=True, help="Lance dataset to create (or extend with --append).")
@click.option("--id-col", help="Column holding the unique row id (default: id; else <manifest>-<row>).")
@click.option("--text-col", help="Column holding the caption/text (default: text or caption).")
@click.option("--image-col", help="Column holding image paths/URIs/bytes (default: image or image_path).")
@click.option("--audio-col", help="Column holding audio paths/URIs/bytes (default: audio or audio_path).")
@click.option("--label-col", help="Column holding the class label (default: label).")
@click.option("--split-col", help="Column holding train/val/test (default: split; else hashed from the id).")
@click.option(
    "--texts-col", help="Column holding every caption of an item, a list (default: texts or captions)."
)
@click.option(
    "--labels-col", help="Column holding every label of a multi-label row, a list (default: labels)."
)
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
@click.option(
    "--max-blob-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LIMITS.max_blob_bytes / (1 << 20),
    show_default=True,
    help="Largest image or audio file read; larger ones reject their row.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMITS.max_pixels,
    show_default=True,
    help="Largest image (width x height, from its header): refuses decompression bombs.",
)
@click.option(
    "--max-text-kb",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LIMITS.max_text_bytes / (1 << 10),
    show_default=True,
    help="Longest text value (caption, id, label, metadata; UTF-8) and caption file.",
)
@click.option(
    "--max-audio-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LIMITS.max_audio_seconds,
    show_default=True,
    help="Longest audio clip (from its header).",
)
@click.option(
    "--max-audio-samples",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMITS.max_audio_samples,
    show_default=True,
    help="Most audio samples (frames x channels, from the header) in one clip.",
)
@click.option(
    "--follow-symlinks",
    is_flag=True,
    help="Read symlinks that lead out of the manifest's folder or the folder tree (refused by default).",
)
@click.option(
    "--image-max-side",
    type=click.IntRange(min=16),
    help="Also store a training-ready JPEG copy of each image whose longer side is over this many pixels, "
    "downscaled to it (keep it >= the model's image size x the aspect ratio, e.g. 320-512 for 224 px).",
)
@click.option(
    "--audio-rate",
    type=click.IntRange(min=1000, max=384_000),
    help="Also store a training-ready mono FLAC copy of each clip at this rate (the model's, e.g. 16000).",
)
@click.option(
    "--drop-originals",
    is_flag=True,
    help="Store the training-ready copies instead of the originals (smaller; the originals are not kept).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Validate and write on a Ray cluster (auto, ray://HOST:10001; bare --ray: a local one); "
    "see docs/scale.md.",
)
@click.option(
    "--video-frame",
    default="middle",
    show_default=True,
    help="Frame of each video (clip window) stored as its image: middle, a fraction 0..1, or seconds like 2.5s.",
)
@click.option(
    "--video-frames",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Store this many evenly spaced frames of each video, one row each (<id>#f0, <id>#f1, ...).",
)
@click.option(
    "--video-image-format",
    type=click.Choice(["jpeg", "png"]),
    default="jpeg",
    show_default=True,
    help="Encoding of the frames taken from videos.",
)
@click.option(
    "--video-require-audio",
    is_flag=True,
    help="Reject videos without an audio track (default: keep the frame).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON instead of a summary.")
def ingest_command(
    source: tuple[str, ...],
    video_frame: str,
    video_frames: int,
    video_image_format: str,
    video_require_audio: bool,
    out: str,
    id_col: str | None,
    text_col: str | None,
    image_col: str | None,
    audio_col: str | None,
    label_col: str | None,
    split_col: str | None,
    texts_col: str | None,
    labels_col: str | None,
    split_ratios: str,
    append: bool,
    overwrite: bool,
    strict: bool,
    workers: int | None,
    batch_rows: int,
    max_blob_mb: float,
    max_pixels: int,
    max_text_kb: float,
    max_audio_seconds: float,
    max_audio_samples: int,
    follow_symlinks: bool,
    image_max_side: int | None,
    audio_rate: int | None,
    drop_originals: bool,
    ray_address: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Turn a manifest (CSV, TSV, JSONL, Parquet), a folder tree or webdataset shards into an mmpt Lance dataset.

    SOURCE may be several .tar shards, a quoted brace pattern ('shards/{00000..00099}.tar') or a glob; videos
    (a video column, video files in a folder) give a frame and their audio track (docs/ingest-sources.md).

    Bad rows are skipped and listed with their reason in <out>.report.json (corpus.lance -> corpus.report.json).
    Oversized, special (devices, FIFOs) or out-of-folder files are such rows; see docs/data-safety.md.
    """
    from mmpt.store.ingest import ingest
    from mmpt.store.video import VideoInput, VideoOptions

    given: str | list[str] | VideoInput = source[0] if len(source) == 1 else list(source)
    video = VideoOptions(video_frame, video_frames, video_image_format, video_require_audio)
    if video != VideoOptions():
        given = VideoInput(given, video)
    run = ingest
    if ray_address is not None:
        from mmpt.store.ray_ingest import ray_ingest_command

        run = ray_ingest_command(ray_address)
    result = run(
        given,
        out,
        id_col=id_col,
        text_col=text_col,
        image_col=image_col,
        audio_col=audio_col,
        label_col=label_col,
        split_col=split_col,
        texts_col=texts_col,
        labels_col=labels_col,
        split_ratios=split_ratios,
        append=append,
        overwrite=overwrite,
        strict=strict,
        workers=workers,
        batch_rows=batch_rows,
        max_blob_mb=max_blob_mb,
        max_pixels=max_pixels,
        max_text_kb=max_text_kb,
        max_audio_seconds=max_audio_seconds,
        max_audio_samples=max_audio_samples,
        follow_symlinks=follow_symlinks,
        image_max_side=image_max_side,
        audio_rate=audio_rate,
        drop_originals=drop_originals,
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
@click.option("--batch-rows", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "--repair",
    is_flag=True,
    help="Make the newest version that reads fully (blobs matching, ids unique) the latest one again.",
)
def verify_command(dataset: str, batch_rows: int, repair: bool) -> None:
    """Read every file of the latest version, re-hash every blob against its sha256 and check ids are unique.

    Lance keeps no payload checksum, so this is how damage shows. --repair restores the newest good
    version (a new version; the damaged ones stay in the history) when the latest is not good.
    """
    from mmpt.store.integrity import check_latest
    from mmpt.store.integrity import repair as restore_good

    if repair:
        click.echo(restore_good(dataset, batch_rows=batch_rows).summary())
        return
    result = check_latest(dataset, batch_rows=batch_rows)
    if not result.ok:
        where = f" (version {result.version})" if result.version is not None else ""
        raise DataError(
            f"{dataset}{where}: {'; '.join(result.problems())}; `mmpt data verify --repair {dataset}` "
            f"restores the newest version that reads fully"
        )
    click.echo(
        f"all {result.rows:,} rows of {dataset} (version {result.version}) read fully: ids unique, "
        f"every blob matches its sha256"
    )


def _version(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value
