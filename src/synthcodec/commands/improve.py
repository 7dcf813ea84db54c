"""`synthcodec improve`: rewrite undecided instructions with one Self-Rubrics action (§1.4)."""

from __future__ import annotations

from typing import Any

import click

from synthcodec.codeclm.cli_options import (
    codec_options,
    config_from,
    model_option,
    prompts_option,
    run_dir_argument,
)
from synthcodec.codeclm.loop import improve_plan
from synthcodec.codeclm.pipeline import run_stage_command
from synthcodec.commands.printing import print_stage_command, say
from synthcodec.options import options_from, run_options


@click.command("improve")
@run_dir_argument
@model_option("strong")
@click.option("--round", "round_", type=click.IntRange(1), default=None,
              help="Which round (default: the latest one ready for this step).")
@codec_options("max_iterations", "temperature", "max_tokens", "seed", "parse_tries")
@prompts_option
@run_options
def command(run_dir: str, strong: str | None, round_: int | None,
            prompts_dir: str | None, **kwargs: Any) -> None:
    """Rewrite round R's undecided instructions following one random rubric action.

    Reads RUN/contrast_R.jsonl and RUN/rubrics.jsonl; writes RUN/improved_{R+1}.jsonl.
    The action is chosen with --seed per instruction and recorded. R defaults to the
    latest judged round.
    """
    options, cfg = options_from(kwargs), config_from(kwargs)
    done = run_stage_command(lambda ctx, models, run: improve_plan(ctx, models, run, round_),
                             run_dir=run_dir, roles={"strong": strong}, cfg=cfg,
                             options=options, prompts_dir=prompts_dir, say=say)
    print_stage_command(done)
