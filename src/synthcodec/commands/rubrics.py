"""`synthcodec rubrics`: 4 rubrics and 4 matching actions per metadata entry (§1.4)."""

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
from synthcodec.codeclm.pipeline import run_stage_command
from synthcodec.codeclm.stages import rubrics_plan
from synthcodec.commands.printing import print_stage_command, say
from synthcodec.options import options_from, run_options


@click.command("rubrics")
@run_dir_argument
@model_option("strong")
@codec_options("n_rubrics", "temperature", "max_tokens", "parse_tries")
@prompts_option
@run_options
def command(run_dir: str, strong: str | None, prompts_dir: str | None, **kwargs: Any) -> None:
    """Write Self-Rubrics (rubrics + actions) for every entry of RUN/metadata.jsonl."""
    options, cfg = options_from(kwargs), config_from(kwargs)
    done = run_stage_command(lambda ctx, models, run: rubrics_plan(ctx, models, run.path),
                             run_dir=run_dir, roles={"strong": strong}, cfg=cfg,
                             options=options, prompts_dir=prompts_dir, say=say)
    print_stage_command(done)
