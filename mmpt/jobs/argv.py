"""Keyword arguments -> the `python -m mmpt <verb> ...` command line, checked against the verb's own click options.

The verbs' click commands are the single source of the flag names, types and choices: `max_steps=20` becomes
`--max-steps 20`, `True` a bare flag, a list a comma-joined value (or the option repeated, for repeatable
ones), a dict `KEY=VALUE` items. Anything click would reject is a one-line ConfigError before a process starts.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from mmpt.errors import ConfigError

COMMANDS: dict[str, str] = {
    "pretrain": "mmpt.train.commands:pretrain_command",
    "finetune": "mmpt.train.commands:finetune_command",
    "eval": "mmpt.eval.commands:eval_command",
    "embed": "mmpt.embed.commands:embed_command",
    "project": "mmpt.embed.commands:project_command",
}
KINDS = tuple(COMMANDS)
RESERVED = ("run", "resume_dir")  # the run is start()'s own argument; resuming is Job.resume()


def command(kind: str) -> click.Command:
    """The click command of a job kind."""
    if kind not in COMMANDS:
        raise ConfigError(f"unknown job kind {kind!r}: expected one of {', '.join(KINDS)}")
    module, attr = COMMANDS[kind].split(":")
    return getattr(importlib.import_module(module), attr)


def _options(cmd: click.Command) -> dict[str, click.Option]:
    """Keyword -> option: by the option's parameter name and by its long flag spelled with underscores."""
    out: dict[str, click.Option] = {}
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name not in RESERVED:
            out[p.name] = p
            for opt in p.opts:
                if opt.startswith("--"):
                    out.setdefault(opt[2:].replace("-", "_"), p)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # TOML spelling, which --set parses
    return str(value)


def _items(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [f"{k}={_text(v)}" for k, v in value.items()]
    if isinstance(value, (list, tuple, set)):
        return [_text(v) for v in value]
    return [_text(value)]


def cli_args(kind: str, run: str | Path | None, config: Mapping[str, Any]) -> list[str]:
    """The verb's arguments (after `mmpt <verb>`) for `config`, validated by parsing them with click."""
    cmd = command(kind)
    options = _options(cmd)
    if "resume_dir" in config or "resume" in config:
        raise ConfigError("resume a run with mmpt.jobs.resume(run) or job.resume(), not a start() setting")
    unknown = sorted(k for k in config if k not in options)
    if unknown:
        names = sorted({p.name for p in options.values()})
        raise ConfigError(f"mmpt {kind} has no setting {', '.join(unknown)}; it takes {', '.join(names)}")
    args = ["--run", str(run)] if run is not None else []
    for key, value in config.items():
        p = options[key]
        flag = next((o for o in p.opts if o.startswith("--")), p.opts[0])
        if value is None:
            continue
        if p.is_flag:
            if p.secondary_opts and not value:
                args.append(p.secondary_opts[0])
            elif value:
                args.append(flag)
        elif p.multiple:
            for item in _items(value):
                args += [flag, item]
        else:
            args += [flag, ",".join(_items(value))]
    parse(kind, args)
    return args


def parse(kind: str, args: list[str]) -> dict[str, Any]:
    """The verb's parameters as click parses `args` (what its function receives); click errors are one line."""
    cmd = command(kind)
    try:
        with cmd.make_context(f"mmpt {kind}", list(args)) as ctx:
            return dict(ctx.params)
    except click.ClickException as exc:
        raise ConfigError(f"mmpt {kind}: {exc.format_message()}") from None


def build_argv(kind: str, run: str | Path | None, config: Mapping[str, Any]) -> list[str]:
    """`[python, -m, mmpt, kind, --run RUN, ...]` for `config` (unknown or invalid settings: ConfigError)."""
    return [sys.executable, "-m", "mmpt", kind, *cli_args(kind, run, config)]
