"""`synthcodec run experiment.toml` with an [experiment] table (or `synthcodec experiment
RECIPE`): datasets → one LoRA adapter each → benchmark answers → pairwise judge → report.

The table is a whole recipe with sub-tables, not one command's options, so this kind
parses it itself (`prepare_table`); see synthcodec.experiment and docs/experiment.md.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch's first import

from synthcodec.commands.printing import print_comparison  # noqa: E402
from synthcodec.errors import UserError  # noqa: E402
from synthcodec.experiment import Experiment, Interrupted, describe, run_experiment  # noqa: E402


def prepare_table(table: Mapping[str, Any], where: str, recipe_text: str | None = None,
                  judge_check: bool = True) -> tuple[str, Callable[[], None]]:
    """Check the [experiment] table now; return (description, the job) for `synthcodec run`.
    `judge_check=False` (--no-judge-check): no judge check before rate and compare."""
    exp = Experiment.from_table(table, where, recipe_text=recipe_text)
    if not judge_check:
        exp.judge_check_probes = 0

    def job() -> None:
        try:
            run_experiment(exp, show_comparison=print_comparison,
                           say=lambda line: print(line, file=sys.stderr, flush=True))
        except Interrupted as exc:
            print(f"interrupted: {exc}", file=sys.stderr)
            raise SystemExit(130) from None
        except KeyboardInterrupt:
            print("interrupted: run the experiment again to resume (finished steps are "
                  "skipped)", file=sys.stderr)
            raise SystemExit(130) from None

    plan = " → ".join(exp.plan())
    return f"{describe(exp)}\n  steps: {plan}", job


@click.command("experiment")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the recipe and print the steps only.")
@click.option("--no-judge-check", is_flag=True,
              help="No judge check before the rate and compare steps (by default each probes "
                   "its judge first: judge_check_probes = N in the table, 0 for none).")
def command(recipe: str, dry_run: bool, no_judge_check: bool) -> None:
    """Run the [experiment] table of RECIPE (TOML): build datasets, train a LoRA adapter on
    each, answer a benchmark with each adapter, judge them pairwise, write report.md.

    Same as `synthcodec run RECIPE`. Finished steps are skipped on a re-run.
    """
    text = Path(recipe).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{recipe}: not valid TOML: {exc}") from None
    if not isinstance(data.get("experiment"), dict):
        raise UserError(f"{recipe}: no [experiment] table")
    description, job = prepare_table(data["experiment"], f"{recipe} [experiment]", text,
                                     judge_check=not no_judge_check)
    click.echo(f"synthcodec experiment {description}", err=True)
    if not dry_run:
        job()
