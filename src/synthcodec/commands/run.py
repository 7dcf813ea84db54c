"""`synthcodec run recipe.toml`: run the tables of a recipe file, in file order.

Each top-level table names a command kind and holds that command's options under their
long names (`per-metadata` or `per_metadata`); positional arguments go by their names
(`seeds`). A new kind is one line in `KINDS`: the module of a click command.
"""

from __future__ import annotations

import functools
import importlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from synthcodec.errors import UserError

KINDS: dict[str, str] = {
    "generate": "synthcodec.commands.generate",
    "experiment": "synthcodec.commands.experiment",
}


def table_to_args(cmd: click.Command, table: Mapping[str, Any], where: str) -> list[str]:
    """Turn `{option: value}` into the command line the command would get."""
    params = {p.name: p for p in cmd.params if p.name}
    by_flag = {opt.lstrip("-").replace("-", "_"): p for p in cmd.params
               for opt in getattr(p, "opts", []) if opt.startswith("--")}
    args: list[str] = []
    positional: list[str] = []
    for key, value in table.items():
        name = key.replace("-", "_")
        param = by_flag.get(name) or params.get(name)
        if param is None:
            known = sorted(by_flag) + sorted(p.name for p in cmd.params
                                             if isinstance(p, click.Argument) and p.name)
            raise UserError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")
        if isinstance(param, click.Argument):
            positional += [str(v) for v in (value if isinstance(value, list) else [value])]
            continue
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if isinstance(param, click.Option) and param.is_flag:
            if not isinstance(value, bool):
                raise UserError(f"{where}: {key} is a flag: write true or false")
            if value:
                args.append(flag)
            elif param.secondary_opts:  # `judge-json = false` means --judge-text
                args.append(param.secondary_opts[0])
        elif isinstance(value, list):
            for item in value:
                args += [flag, str(item)]
        elif isinstance(value, dict):  # e.g. field = {instruction = "text"}
            for k, v in value.items():
                args += [flag, f"{k}={v}"]
        else:
            args += [flag, str(value)]
    return positional + args


@click.command("run")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
def command(recipe: str, dry_run: bool) -> None:
    """Run every table of RECIPE (TOML), e.g. a [generate] table with all generate options.

    Relative paths in the recipe are relative to the current directory.
    """
    try:
        text = Path(recipe).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{recipe}: not valid TOML: {exc}") from None
    if not data:
        raise UserError(f"{recipe}: no tables; start one with e.g. [generate]")
    jobs = []
    for kind, table in data.items():
        if kind not in KINDS:
            raise UserError(f"{recipe}: unknown table [{kind}]; known kinds: "
                            + ", ".join(sorted(KINDS)))
        if not isinstance(table, dict):
            raise UserError(f"{recipe}: [{kind}] must be a table")
        module = importlib.import_module(KINDS[kind])
        where = f"{recipe} [{kind}]"
        if hasattr(module, "prepare_table"):
            # A kind whose table is a whole recipe with sub-tables ([experiment]): the
            # module checks it and returns (description, job).
            description, job = module.prepare_table(table, where, text)
            jobs.append((kind, description, job))
            continue
        cmd = module.command
        args = table_to_args(cmd, table, where)
        jobs.append((kind, " ".join(args), functools.partial(
            cmd.main, args=args, prog_name=f"synthcodec {kind}", standalone_mode=False)))
    for kind, description, job in jobs:  # all tables checked before anything runs
        click.echo(f"synthcodec {kind} {description}", err=True)
        if not dry_run:
            job()
