"""`synthcodec decode`: metadata -> base instructions, K per entry (CodecLM §1.3)."""

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
from synthcodec.codeclm.stages import decode_plan
from synthcodec.commands.printing import print_stage_command, say
from synthcodec.options import options_from, run_options


@click.command("decode")
@run_dir_argument
@model_option("strong")
@codec_options("per_metadata", "temperature", "max_tokens", "rouge_threshold", "parse_tries",
               defaults={"per_metadata": 5})
@prompts_option
@run_options
def command(run_dir: str, strong: str | None, prompts_dir: str | None, **kwargs: Any) -> None:
    """Write K base instructions per entry of RUN/metadata.jsonl into RUN/instructions.jsonl.

    Empty and duplicate items are dropped, and so are near-duplicates of earlier ones.
    """
    options, cfg = options_from(kwargs), config_from(kwargs)
    done = run_stage_command(lambda ctx, models, run: decode_plan(ctx, models, run.path),
                             run_dir=run_dir, roles={"strong": strong}, cfg=cfg,
                             options=options, prompts_dir=prompts_dir, say=say)
    print_stage_command(done)
