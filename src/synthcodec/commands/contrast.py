"""`synthcodec contrast`: Contrastive Filtering, pairwise scores in both orders (§1.5)."""

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
from synthcodec.codeclm.loop import contrast_plan
from synthcodec.codeclm.pipeline import run_stage_command
from synthcodec.commands.printing import print_stage_command, say
from synthcodec.options import options_from, run_options


@click.command("contrast")
@run_dir_argument
@model_option("strong")
@model_option("target")
@click.option("--round", "round_", type=click.IntRange(1), default=None,
              help="Which round (default: the latest one ready for this step).")
@codec_options("theta", "max_iterations", "judge_max_tokens", "judge_reasks", "judge_json",
               "answer_temperature", "max_tokens", "temperature", "seed", "parse_tries")
@prompts_option
@run_options
def command(run_dir: str, strong: str | None, target: str | None, round_: int | None,
            prompts_dir: str | None, **kwargs: Any) -> None:
    """Judge round R's answers in both orders and decide: keep, improve or reject.

    Writes RUN/contrast_R.jsonl, then RUN/output.jsonl, rejected.jsonl and failed.jsonl
    from every round so far, and the summary. R defaults to the latest round with responses.
    """
    options, cfg = options_from(kwargs), config_from(kwargs)
    done = run_stage_command(lambda ctx, models, run: contrast_plan(ctx, models, run, round_),
                             run_dir=run_dir, roles={"strong": strong, "target": target}, cfg=cfg,
                             options=options, prompts_dir=prompts_dir, say=say)
    print_stage_command(done)
