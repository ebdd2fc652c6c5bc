"""`mmpt eval`: the evaluation report of a run on a dataset split, optionally side by side with another run."""

from __future__ import annotations

import json

import click


@click.command("eval")
@click.option("--run", "run", required=True, help="Run directory or checkpoint folder to evaluate.")
@click.option("--data", "data", help="Lance dataset (default: the one the run trained on).")
@click.option("--split", default="test", show_default=True)
@click.option(
    "--prompt",
    default="a photo of a {label}",
    show_default=True,
    help="Zero-shot prompt template; {label} is replaced by each label name.",
)
@click.option("--probe-split", default=None, help="Also fit a linear probe on this split (e.g. train).")
@click.option(
    "--protocol",
    default=None,
    help="Run a standard protocol instead (esc50, urbansound8k, audiocaps, clotho, coco, flickr30k): its own "
    "rows, prompt and figures, printed beside the published ones (docs/datasets.md).",
)
@click.option("--compare", "compare_run", default=None, help="Another run to show side by side.")
@click.option(
    "--name", default=None, help="Report name under RUN/eval/ (default: the protocol, else the split)."
)
@click.option("--html", "html", is_flag=True, help="Also write RUN/eval/<name>.html with figures.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_command(
    run: str,
    data: str | None,
    split: str,
    prompt: str,
    probe_split: str | None,
    protocol: str | None,
    compare_run: str | None,
    name: str | None,
    html: bool,
    device: str,
    batch_size: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Evaluate a run: zero-shot, retrieval, label match (and a linear probe) on a split."""
    from pathlib import Path

    from mmpt.eval.compare import compare, format_comparison
    from mmpt.eval.report import format_report
    from mmpt.eval.run import evaluate_run

    def evaluate(path: str, dataset: str | None) -> dict:
        return evaluate_run(
            path,
            dataset,
            split,
            name=name,
            prompt=prompt,
            probe_split=probe_split,
            protocol=protocol,
            device=device,
            batch_size=batch_size,
            progress=not quiet,
        )

    report = evaluate(run, data)
    comparison = None
    if compare_run:
        other = evaluate(compare_run, data or report["meta"]["dataset"])
        names = (Path(compare_run).name, Path(run).name)
        comparison = compare(other, report, names=names if names[0] != names[1] else ("other", "this"))
    if html and (Path(run) / "eval").is_dir():
        from mmpt.eval.html import write_html

        path = Path(run) / "eval" / f"{name or report.get('protocol', {}).get('name') or split}.html"
        write_html(report, path, metrics_jsonl=Path(run) / "metrics.jsonl", comparison=comparison)
        if not as_json:
            click.echo(f"HTML report: {path}")
    if as_json:
        click.echo(
            json.dumps(
                {**report, "comparison": comparison} if comparison else report, indent=2, default=float
            )
        )
        return
    if protocol:
        from mmpt.eval.protocol_run import format_protocol

        click.echo(format_protocol(report))
    else:
        click.echo(format_report(report))
    if comparison:
        click.echo(format_comparison(comparison))
