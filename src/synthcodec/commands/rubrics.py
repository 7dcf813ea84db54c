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
from synthcodec.codeclm.pipeline import (
    cost_lines,
    exit_code,
    make_ctx,
    print_lines,
    resolve_models,
    run_with_models,
)
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.stages import rubrics_stage
from synthcodec.codeclm.workspace import Workspace
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
    prompts = Prompts.load(prompts_dir)
    with Workspace(run_dir, overwrite=options.overwrite) as ws:
        specs = resolve_models(ws, strong=strong)
        result = run_with_models(specs, options, lambda models: rubrics_stage(
            ws, models, make_ctx(models, cfg, prompts), options), ws=ws)
    print_lines([result.line(), *result.notes, *cost_lines(ws)])
    if result.interrupted:
        raise SystemExit(exit_code(ws, True))
