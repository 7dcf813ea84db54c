"""`synthcodec run recipe.toml`: run the tables of a recipe file, in file order.

Each top-level table names a command kind and holds that command's settings under their
option names (`per-metadata` or `per_metadata`); arguments go by their names (`seeds`). A
kind's module parses its table straight into its typed settings (`prepare_table(table,
where, recipe_text) -> (description, job)`); a new kind is one line in `KINDS`.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import click

from synthcodec.errors import UserError

KINDS: dict[str, str] = {
    "generate": "synthcodec.commands.generate",
    "experiment": "synthcodec.commands.experiment",
}


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
        description, job = module.prepare_table(table, f"{recipe} [{kind}]", text)
        jobs.append((kind, description, job))
    for kind, description, job in jobs:  # all tables checked before anything runs
        click.echo(f"synthcodec {kind} {description}", err=True)
        if not dry_run:
            job()
