"""`synthcodec encode`: seed instructions -> use case + skills per seed (CodecLM §1.1)."""

from __future__ import annotations

from typing import Any

import click

from synthcodec.codeclm.cli_options import codec_options, config_from, prompts_option
from synthcodec.codeclm.files import SEED_FIELDS
from synthcodec.codeclm.pipeline import run_stage_command
from synthcodec.codeclm.stages import encode_plan
from synthcodec.commands.printing import print_stage_command, say
from synthcodec.io import parse_field_map, scan_input
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import options_from, run_options


@click.command("encode", epilog=MODEL_SPEC_HELP)
@click.argument("seeds", metavar="SEEDS", type=click.Path(exists=True))
@click.option("--strong", required=True, help="The strong model that names use case and skills.")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; later stages read and write it).")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map instruction/id to input columns, e.g. --field instruction=text.")
@codec_options("temperature", "max_tokens")
@prompts_option
@run_options
def command(seeds: str, strong: str, run_dir: str, fields: tuple[str, ...],
            prompts_dir: str | None, **kwargs: Any) -> None:
    """Name the use case and up to 3 skills of every seed instruction in SEEDS.

    SEEDS rows need an `instruction` (and may have an `id`). Writes RUN/encoded.jsonl.
    """
    options, cfg = options_from(kwargs), config_from(kwargs)
    mapping = parse_field_map(fields)
    scan_input(seeds, SEED_FIELDS, mapping)  # before the run dir is touched
    done = run_stage_command(
        lambda ctx, models, run: encode_plan(ctx, models, seeds, mapping, options.limit),
        run_dir=run_dir, roles={"strong": strong}, cfg=cfg, options=options,
        prompts_dir=prompts_dir, say=say)
    print_stage_command(done)
