"""`synthcodec generate`: the whole CodecLM pipeline, until n pairs are kept (methods.md §1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from synthcodec.codeclm.cli_options import codec_options, config_from, prompts_option
from synthcodec.codeclm.pipeline import EXPORT_NAMES, generate
from synthcodec.codeclm.recipe import generate_job
from synthcodec.commands.printing import say
from synthcodec.io import parse_field_map
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import judge_check_from, judge_check_options, options_from, run_options


@click.command("generate", epilog=MODEL_SPEC_HELP)
@click.argument("seeds", metavar="SEEDS", type=click.Path(exists=True))
@click.option("--strong", required=True,
              help="The strong model: encodes, writes, improves and judges.")
@click.option("--target", required=True, help="The model the data is for.")
@click.option("-n", "n", type=click.IntRange(1), default=2000, show_default=True,
              help="Stop once this many pairs are kept.")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; re-running the same command resumes it).")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map instruction/id to seed columns, e.g. --field instruction=text.")
@click.option("--oversample", type=click.FloatRange(1.0), default=2.0, show_default=True,
              help="Decode about this many times n base instructions (Contrastive Filtering "
                   "keeps only some); ignored when --per-metadata is given.")
@codec_options("pool_size", "per_metadata", "n_rubrics", "max_iterations", "theta",
               "rouge_threshold", "temperature", "answer_temperature", "max_tokens",
               "judge_max_tokens", "judge_reasks", "judge_json", "judge_scores", "judge_evidence_first", "seed",
               "parse_tries")
@click.option("--format", "export_format", type=click.Choice(sorted(EXPORT_NAMES)),
              default=None, help="Also export the kept pairs in this fine-tuning format.")
@prompts_option
@judge_check_options
@run_options
def command(seeds: str, strong: str, target: str, n: int, run_dir: str, fields: tuple[str, ...],
            oversample: float, export_format: str | None, prompts_dir: str | None,
            **kwargs: Any) -> None:
    """Generate instruction-response pairs tailored to SEEDS that TARGET is bad at.

    Runs encode, metadata, decode, rubrics and the Contrastive Filtering loop (improve,
    respond, contrast; up to --max-iterations rounds per instruction) until n pairs are kept
    or the base instructions run out. Kept pairs with full lineage go to RUN/output.jsonl,
    the rest to RUN/rejected.jsonl and RUN/failed.jsonl with reasons; RUN/summary.json and
    RUN/gap_histogram.png report the run. First a small judge check probes STRONG as the
    judge (on the seeds' responses, else on a few packaged ones): RUN/judge_card.md.
    """
    judge_check = judge_check_from(kwargs)
    options, cfg = options_from(kwargs), config_from(kwargs)
    result = generate(seeds=seeds, run_dir=run_dir, strong=strong, target=target, n=n, cfg=cfg,
                      options=options, mapping=parse_field_map(fields),
                      oversample=oversample,
                      prompts_dir=prompts_dir, export_format=export_format,
                      judge_check=judge_check, say=say)
    if result.exit_code:
        raise SystemExit(result.exit_code)


def prepare_table(table: Mapping[str, Any], where: str, recipe_text: str | None = None
                  ) -> tuple[str, Callable[[], None]]:
    """A recipe's [generate] table, checked now, as (description, the job) for `synthcodec
    run`: parsed straight into the typed settings (codeclm/recipe.py), not into argv."""
    job = generate_job(table, where)

    def run() -> None:
        result = job.run(say=say)
        if result.exit_code:
            raise SystemExit(result.exit_code)

    return job.describe(), run
