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
from synthcodec.codeclm.pipeline import (
    cost_lines,
    exit_code,
    make_ctx,
    print_lines,
    resolve_models,
    run_with_models,
)
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.stages import decode_stage
from synthcodec.codeclm.workspace import Workspace
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
    prompts = Prompts.load(prompts_dir)
    with Workspace(run_dir, overwrite=options.overwrite) as ws:
        specs = resolve_models(ws, strong=strong)
        result = run_with_models(specs, options, lambda models: decode_stage(
            ws, models, make_ctx(models, cfg, prompts), options), ws=ws)
    print_lines([result.line(), *result.notes, *cost_lines(ws)])
    if result.interrupted:
        raise SystemExit(exit_code(ws, True))
