"""`synthcodec answer`: answer every question of a benchmark with one model; the logic is
synthcodec.stages.answer."""

from __future__ import annotations

from typing import Any

import click

from synthcodec.commands.printing import print_summary
from synthcodec.io import parse_field_map
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import options_from, run_options
from synthcodec.questions import BENCH_FORMATS, resolve_format
from synthcodec.settings import click_options, from_kwargs
from synthcodec.stages.answer import AnswerStage, answer_file


@click.command("answer", epilog=MODEL_SPEC_HELP)
@click.argument("bench_path", metavar="BENCH", type=click.Path(exists=True))
@click_options(AnswerStage, "model")
@click.option("--bench", "bench_name", default=None, metavar="NAME",
              help=f"Benchmark format: {', '.join(BENCH_FORMATS)} (default: detected from the "
                   "fields).")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map id, text, category, input or instances to a column, "
                   "e.g. --field text=question --field id=qid.")
@click_options(AnswerStage, "system", "temperature", "max_tokens")
@click.option("--output", "-o", "output", required=True, type=click.Path(dir_okay=False),
              help="The answers file (JSONL), written atomically when the run finishes.")
@click.option("--run-dir", default=None, type=click.Path(file_okay=False),
              help="Run directory for resume and bookkeeping (default: OUTPUT.run beside it).")
@run_options
def command(bench_path: str, bench_name: str | None, fields: tuple[str, ...], output: str,
            run_dir: str | None, **kwargs: Any) -> None:
    """Answer every question of the benchmark file BENCH with MODEL.

    BENCH is a Vicuna, Self-Instruct, WizardLM (Evol-Instruct) or Koala question file, or any
    file whose columns --field names. Each answer row keeps the question id, the question,
    its category and the model: {question_id, question, category, answer, model, bench}.
    Feed two such files to `synthcodec compare`.
    """
    settings = from_kwargs(AnswerStage, kwargs)
    options = options_from(kwargs)
    fmt = resolve_format(bench_path, bench_name, parse_field_map(fields))
    summary, n = answer_file(bench_path, output, fmt=fmt, run_dir=run_dir, options=options,
                             **settings)
    code = print_summary(summary)
    if summary.interrupted:
        raise SystemExit(code)
    click.echo(f"wrote {output} ({n} answers)", err=True)
    if summary.failed:
        click.echo(f"note: {summary.failed} questions have no answer yet; run the same command "
                   "again to retry them before comparing", err=True)
    if code:
        raise SystemExit(code)