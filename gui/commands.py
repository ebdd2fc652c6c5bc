"""`mmpt gui [DATASET] [RUN]`: the click command the mmpt CLI registers (imports Qt only when it runs)."""

from __future__ import annotations

import click


@click.command(name="gui")
@click.argument("dataset", required=False)
@click.argument("run", required=False)
@click.option(
    "--settings",
    "settings_path",
    default=None,
    help="INI file for the app's settings (default: the platform's settings store).",
)
def gui_command(dataset: str | None, run: str | None, settings_path: str | None) -> None:
    """Open the desktop app (PySide6), optionally on a dataset and a run."""
    try:
        import pyqtgraph  # noqa: F401
        import PySide6  # noqa: F401
    except ImportError as exc:
        from mmpt.errors import MmptError

        raise MmptError(
            f"the desktop app needs the gui extra ({exc.name} is missing): pip install 'mmpt[gui]'"
        ) from None
    from gui.app import run_app

    raise SystemExit(run_app(dataset, run, settings_path))


def main(argv: list[str] | None = None) -> None:
    """The `mmpt-gui` script."""
    gui_command.main(args=argv, prog_name="mmpt-gui")
