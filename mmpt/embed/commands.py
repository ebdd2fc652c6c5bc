"""`mmpt embed`, `mmpt search`, `mmpt project`: thin click wrappers over mmpt.embed.api and the embed modules."""

from __future__ import annotations

import json
from typing import Any

import click

from mmpt.errors import DataError

DEVICES = click.Choice(["auto", "cpu", "cuda"])


def _modalities(value: str | None) -> list[str] | None:
    """ "image,audio" -> ["image", "audio"]; None or "" -> None (every modality)."""
    if not value:
        return None
    return [m.strip() for m in value.split(",") if m.strip()]


def world_size() -> int:
    """Processes torchrun started for this job (1 when not under torchrun)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=float))


@click.command("embed")
@click.option("--run", "run", required=True, help="Run directory or checkpoint folder whose model embeds.")
@click.option("--data", "data", required=True, help="Lance dataset to add the embedding columns to.")
@click.option(
    "--modalities", default=None, help="Comma-separated, e.g. image,audio (default: all the model has)."
)
@click.option("--split", default=None, help="Embed only this split (default: every row).")
@click.option("--batch-size", default=256, show_default=True)
@click.option(
    "--device", type=DEVICES, default="auto", show_default=True, help="auto: CUDA (bf16) when present."
)
@click.option("--num-workers", default=0, show_default=True, help="DataLoader workers decoding blobs.")
@click.option(
    "--chunk-rows", default=2048, show_default=True, help="Rows staged per durable chunk (resume unit)."
)
@click.option("--name", default=None, help="Column name part (default: the run folder's name, sanitised).")
@click.option(
    "--to",
    "to",
    type=click.Choice(["parquet", "npy", "lance"]),
    default=None,
    help="Also export id + embeddings + label + split to PATH.",
)
@click.option("--path", "path", default=None, help="Where --to writes.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Backfill the columns on a Ray cluster, one model per worker (auto, ray://HOST:10001; bare --ray: "
    "a local one); see docs/scale.md.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed_command(
    run: str,
    data: str,
    modalities: str | None,
    split: str | None,
    batch_size: int,
    device: str,
    num_workers: int,
    chunk_rows: int,
    name: str | None,
    to: str | None,
    path: str | None,
    ray_address: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write emb_<run>_<modality> columns into the dataset (resumable), optionally export them.

    Under torchrun (WORLD_SIZE > 1) each rank embeds its share of the rows and rank 0 commits.
    """
    from mmpt.embed.api import embed_run, embedded_rows
    from mmpt.embed.columns import as_lance, run_tag
    from mmpt.embed.encoder import run_name
    from mmpt.embed.export import export
    from mmpt.store.schema import embedding_column

    if (to is None) != (path is None):
        raise DataError("--to and --path go together: --to parquet|npy|lance --path PATH")
    column_name = run_name(run, name)
    if ray_address is not None:
        from mmpt.embed.ray_embed import ray_embed

        written = ray_embed(
            run,
            data,
            _modalities(modalities),
            split,
            address=ray_address,
            batch_size=batch_size,
            chunk_rows=chunk_rows,
            device=device,
            name=name,
            quiet=quiet,
        )
    else:
        from mmpt.embed.distributed_embed import distributed_embed

        shared = (distributed_embed if world_size() > 1 else embed_run)(
            run,
            data,
            _modalities(modalities),
            split,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            chunk_rows=chunk_rows,
            name=name,
            progress=not quiet,
        )
        if shared is None:  # a torchrun rank other than 0: rank 0 reports
            return
        written = shared
    ds = as_lance(data)
    report: dict[str, Any] = {
        "name": column_name,
        "dataset": ds.uri,
        "version": ds.version,
        "tag": run_tag(column_name),
        "columns": {},
    }
    for m, rows in written.items():
        report["columns"][m] = {
            "column": embedding_column(column_name, m),
            "written": rows,
            "rows": embedded_rows(ds, column_name, m),
        }
    if to is not None and path is not None:  # given together (checked above)
        report["export"] = str(export(ds, column_name, list(written), to, path, split=split))
    if as_json:
        _echo_json(report)
        return
    for info in report["columns"].values():
        click.echo(f"{info['column']}: {info['written']} rows written, {info['rows']} embedded in all")
    click.echo(f"dataset version {report['version']} (tag {report['tag']})")
    if "export" in report:
        click.echo(f"exported {to} to {report['export']}")


def _format_hits(hits: list) -> str:
    lines = [f"{'score':>7}  {'id':<14} {'label':<18} {'split':<6} text"]
    for h in hits:
        text = (h.text or "")[:60]
        lines.append(f"{h.score:7.3f}  {h.id:<14} {h.label or '':<18} {h.split or '':<6} {text}")
    return "\n".join(lines)


@click.command("search")
@click.argument("query", required=False)
@click.option("--run", "run", required=True, help="Run directory or checkpoint folder.")
@click.option("--data", "data", required=True, help="Lance dataset to search.")
@click.option("--image", "image", default=None, type=click.Path(), help="Query with an image file.")
@click.option("--audio", "audio", default=None, type=click.Path(), help="Query with an audio file.")
@click.option(
    "--id", "row_id", default=None, help="Query with a row's stored embedding (the row is left out)."
)
@click.option(
    "--from-modality",
    type=click.Choice(["image", "text", "audio"]),
    default=None,
    help="Which embedding of the --id row to use (default: --modality).",
)
@click.option(
    "--modality",
    required=True,
    type=click.Choice(["image", "text", "audio"]),
    help="Modality of the rows to return.",
)
@click.option("-k", "k", default=10, show_default=True, help="How many neighbours.")
@click.option("--split", default=None, help="Only rows of this split.")
@click.option("--label", default=None, help="Only rows with this label.")
@click.option("--name", default=None, help="Column name part (default: the run folder's name, sanitised).")
@click.option(
    "--index-threshold",
    default=None,
    type=int,
    help="Build and use a vector index from this many rows on (default 50000).",
)
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the hits as JSON (id, score, text, label, split)."
)
@click.option("--quiet", is_flag=True, help="No progress bar when the column must be embedded first.")
def search_command(
    query: str | None,
    run: str,
    data: str,
    image: str | None,
    audio: str | None,
    row_id: str | None,
    from_modality: str | None,
    modality: str,
    k: int,
    split: str | None,
    label: str | None,
    name: str | None,
    index_threshold: int | None,
    device: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Nearest rows of --modality to a text QUERY, an --image, an --audio clip or a row --id."""
    from mmpt.embed.api import search_run

    if from_modality is not None and row_id is None:
        raise DataError("--from-modality goes with --id")
    hits = search_run(
        run,
        data,
        text=query,
        image=image,
        audio=audio,
        row_id=row_id,
        from_modality=from_modality,
        modality=modality,
        k=k,
        split=split,
        label=label,
        name=name,
        index_threshold=index_threshold,
        device=device,
        progress=not quiet and not as_json,
    )
    if as_json:
        _echo_json([h.to_dict() for h in hits])
    else:
        click.echo(_format_hits(hits))


@click.command("project")
@click.option("--run", "run", required=True, help="Run directory or checkpoint folder.")
@click.option("--data", "data", required=True, help="Lance dataset holding (or to receive) the embeddings.")
@click.option("--modality", required=True, type=click.Choice(["image", "text", "audio"]))
@click.option("--method", type=click.Choice(["pca", "umap", "tsne"]), default="pca", show_default=True)
@click.option("--clusters", "k", default=None, type=int, help="Also cache k-means labels with K clusters.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--no-cache", is_flag=True, help="Recompute even if a valid cached column exists (and do not store)."
)
@click.option("--name", default=None, help="Column name part (default: the run folder's name, sanitised).")
@click.option(
    "--device", type=DEVICES, default="auto", show_default=True, help="For embedding first, if needed."
)
@click.option("--json", "as_json", is_flag=True, help="Print the columns written as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def project_command(
    run: str,
    data: str,
    modality: str,
    method: str,
    k: int | None,
    seed: int,
    no_cache: bool,
    name: str | None,
    device: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """2-D projection (and k-means clusters) of a run's embeddings, cached as dataset columns."""
    import numpy as np

    from mmpt.embed.api import ensure_embedded
    from mmpt.embed.encoder import run_name
    from mmpt.embed.projections import clusters, project

    column_name = run_name(run, name)
    source = ensure_embedded(
        run, data, modality, name=name, device=device, progress=not quiet and not as_json
    )
    result = project(
        data,
        column_name,
        modality,
        method,
        cache=not no_cache,
        seed=seed,
        progress=(lambda fraction, message: None) if quiet or as_json else None,
    )
    lo, hi = result.values.min(axis=0), result.values.max(axis=0)
    report: dict[str, Any] = {
        "source": source,
        "column": result.column,
        "rows": len(result.ids),
        "cached": result.cached,
        "x": [lo[0], hi[0]],
        "y": [lo[1], hi[1]],
    }
    if k is not None:
        labels = clusters(data, column_name, modality, k, cache=not no_cache, seed=seed)
        report["clusters"] = {
            "column": labels.column,
            "k": k,
            "cached": labels.cached,
            "sizes": np.bincount(labels.values, minlength=k).tolist(),
        }
    if as_json:
        _echo_json(report)
        return
    state = "reused from cache" if result.cached else "computed" + ("" if no_cache else " and cached")
    click.echo(
        f"{result.column}: {len(result.ids)} rows, {state}; "
        f"x {lo[0]:.3f}..{hi[0]:.3f}, y {lo[1]:.3f}..{hi[1]:.3f}"
    )
    if k is not None:
        c = report["clusters"]
        click.echo(f"{c['column']}: {k} clusters, sizes {c['sizes']}" + (" (cached)" if c["cached"] else ""))
