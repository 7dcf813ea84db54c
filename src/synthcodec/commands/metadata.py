"""`synthcodec metadata`: the metadata pool, observed pairs first, then mix-and-match (§1.2)."""

from __future__ import annotations

import click

from synthcodec.codeclm.cli_options import codec_options, config_from, run_dir_argument
from synthcodec.codeclm.pipeline import run_metadata_command
from synthcodec.commands.printing import say


@click.command("metadata")
@run_dir_argument
@codec_options("pool_size", "seed")
@click.option("--overwrite", is_flag=True,
              help="Rebuild metadata.jsonl even if it was written or edited by hand.")
def command(run_dir: str, overwrite: bool, **kwargs: object) -> None:
    """Build RUN/metadata.jsonl from RUN/encoded.jsonl.

    The file is yours to edit: drop unreasonable pairs or write it from scratch (one JSON
    object per line with `use_case` and `skills`); later stages use it as it is.
    """
    cfg = config_from(kwargs)
    run_metadata_command(run_dir=run_dir, cfg=cfg, overwrite=overwrite, say=say)
