"""`mmpt ...`: one command per verb; each verb lives next to the code it drives and is imported on use."""

from __future__ import annotations

import importlib
import sys

import click

from mmpt.errors import MmptError

# verb -> "module:attribute" of its click command; imported only when the verb runs, so `mmpt --help` is quick.
VERBS: dict[str, str] = {
    "demo": "mmpt.demo:demo_command",
    "doctor": "mmpt.doctor:doctor_command",
    "ingest": "mmpt.store.commands:ingest_command",
    "data": "mmpt.store.commands:data_group",
    "pretrain": "mmpt.train.commands:pretrain_command",
    "finetune": "mmpt.train.commands:finetune_command",
    "sweep": "mmpt.train.commands:sweep_command",
    "eval": "mmpt.eval.commands:eval_command",
    "embed": "mmpt.embed.commands:embed_command",
    "search": "mmpt.embed.commands:search_command",
    "project": "mmpt.embed.commands:project_command",
    "gui": "gui.commands:gui_command",
}

HELP = {
    "demo": "Build the demo dataset, pretrain the tiny model on it, evaluate and report.",
    "doctor": "Check the environment: versions, compiled ops, devices, extras.",
    "ingest": "Turn a manifest, folder tree or table into an mmpt Lance dataset.",
    "data": "Inspect a dataset (data info).",
    "pretrain": "Pretrain a contrastive text-image-audio model from a Lance dataset.",
    "finetune": "Fine-tune pretrained weights (contrastive or classification).",
    "sweep": "Search fine-tuning hyperparameters with Optuna (TPE, grid, random; pruning).",
    "eval": "Evaluate a run: zero-shot, retrieval, label match, probes.",
    "embed": "Write embedding columns into the dataset or export them.",
    "search": "Nearest-neighbour search across modalities.",
    "project": "2-D projections (PCA, UMAP, t-SNE) and clusters of embeddings.",
    "gui": "Open the desktop app (PySide6) on a dataset and a run.",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported the first time they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = VERBS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if broken_environment(exc):
                raise
            # A verb whose optional dependency is missing is still listed, and says why it cannot run.
            reason = str(exc)

            @click.command(
                name=name,
                help=HELP.get(name, ""),
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            )
            def unavailable() -> None:
                raise MmptError(f"'mmpt {name}' is not available: {reason}")

            return unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, HELP.get(name, "")) for name in VERBS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmpt")
def cli() -> None:
    """mmpt: contrastive text-image-audio pretraining on a Lance dataset store."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit status 1."""
    try:
        cli.main(args=argv, prog_name="mmpt", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MmptError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BaseException as exc:  # noqa: BLE001 - Lance panics are BaseExceptions; others are re-raised
        line = one_line(exc, sys.argv[1:] if argv is None else argv)
        if line is None:
            raise
        click.echo(f"error: {line}", err=True)
        sys.exit(1)


def one_line(exc: BaseException, argv: list[str] | None = None) -> str | None:
    """One line for what the verbs do not turn into MmptError themselves, else None (a real bug: traceback).

    A damaged Lance file met anywhere (training, eval...) names the file and `mmpt data verify --repair`;
    a compiled dependency that fails to load (a torch/torchaudio mismatch) says how to fix it.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        return None
    from mmpt.store.integrity import damage_line

    args = list(argv or [])
    data = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--data"), None)
    data = next((a.split("=", 1)[1] for a in args if a.startswith("--data=")), data)
    line = damage_line(exc, data)
    if line is None and isinstance(exc, OSError | ImportError | RuntimeError):
        line = broken_environment(exc)
    return line


def broken_environment(exc: BaseException) -> str | None:
    """The one-line diagnosis when `exc` is a compiled library failing to load, else None."""
    from mmpt.binaries import diagnose_load_error

    return diagnose_load_error(exc)
