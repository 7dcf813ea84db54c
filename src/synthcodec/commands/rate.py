"""`synthcodec rate`: score every (instruction, input, response) row 0–5 with an LLM judge
(AlpaGasus); the logic is synthcodec.stages.rate."""

from __future__ import annotations

import sys
from typing import Any

import click

from synthcodec.commands.printing import print_lines, print_summary, say
from synthcodec.errors import UserError
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import (
    judge_check_from,
    judge_check_options,
    options_from,
    run_options,
)
from synthcodec.settings import click_options, from_kwargs
from synthcodec.stages.rate import (
    RateStage,
    field_mapping,
    rate_file,
    rating_template,
    score_lines,
)


@click.command("rate", epilog=MODEL_SPEC_HELP)
@click.argument("input_path", metavar="DATA", type=click.Path(exists=True))
@click_options(RateStage, "judge", "dimension")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map instruction/input/response to input columns (default: response=output).")
@click.option("--template", "template_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Your own rating prompt (start from synthcodec/prompts/rate.txt).")
@click_options(RateStage, "json", "reasks", "max_tokens", "scores")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; re-running the same command resumes it).")
@judge_check_options
@run_options
def command(input_path: str, fields: tuple[str, ...], template_path: str | None, run_dir: str,
            **kwargs: Any) -> None:
    """Rate every (instruction, input, response) row of DATA from 0 to 5 with JUDGE (AlpaGasus).

    DATA may be JSONL, a JSON array (e.g. Alpaca), CSV, Parquet or a saved Hugging Face
    dataset; rows need instruction and output (input is optional). RUN/output.jsonl holds
    each row plus score, explanation and judge_text; rows the judge could not rate are in
    RUN/failed.jsonl with the reason. First a small judge check probes JUDGE on a few rows
    (RUN/judge_card.md). Then: synthcodec select RUN --min-score 4.5 -o kept.jsonl
    """
    settings = from_kwargs(RateStage, kwargs)
    judge_check = judge_check_from(kwargs)
    options = options_from(kwargs)
    mapping = field_mapping(fields)
    settings["dimension"] = " ".join(settings["dimension"].split())
    if not settings["dimension"]:
        raise UserError("--dimension must not be empty")
    summary = rate_file(input_path, run_dir, mapping=mapping,
                        template=rating_template(template_path), judge_check=judge_check,
                        say=say, options=options, **settings)
    code = print_summary(summary)
    if summary.interrupted:
        raise SystemExit(code)
    if summary.kept:
        print_lines(score_lines(summary.run_dir / "output.jsonl"))
        print(f"next: synthcodec select {summary.run_dir} --min-score 4.5 -o kept.jsonl",
              file=sys.stderr)
    if code:
        raise SystemExit(code)
