"""The `synthcodec` command: thin; each subcommand lives in synthcodec.commands.<name>."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from synthcodec import __version__
from synthcodec.errors import UserError

# name -> module; imported only when that command runs, so `--help` stays fast.
COMMANDS: dict[str, str] = {
    "complete": "synthcodec.commands.complete",
    "rate": "synthcodec.commands.rate",
    "select": "synthcodec.commands.select",
    "answer": "synthcodec.commands.answer",
    "compare": "synthcodec.commands.compare",
    # CodecLM generation (synthcodec.codeclm)
    "encode": "synthcodec.commands.encode",
    "metadata": "synthcodec.commands.metadata",
    "decode": "synthcodec.commands.decode",
    "rubrics": "synthcodec.commands.rubrics",
    "improve": "synthcodec.commands.improve",
    "respond": "synthcodec.commands.respond",
    "contrast": "synthcodec.commands.contrast",
    "generate": "synthcodec.commands.generate",
    "run": "synthcodec.commands.run",
    "train": "synthcodec.commands.train",
    "experiment": "synthcodec.commands.experiment",
    "benchmark": "synthcodec.commands.benchmark",
    # see and share a run
    "view": "synthcodec.commands.view",
    "push": "synthcodec.commands.push",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        return importlib.import_module(module).command  # type: ignore[no-any-return]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synthcodec")
def cli() -> None:
    """Make instruction-tuning data tailored to a target model, filter datasets with an LLM
    rater, and evaluate with a pairwise LLM judge.

    Every model-calling command writes a run directory (-o RUN) that a re-run resumes, and
    caches every request, so repeating a command sends no requests twice.
    """


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="synthcodec", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("aborted", err=True)
        sys.exit(130)
