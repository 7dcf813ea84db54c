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
from synthcodec.stages.answer import answer_file


@click.command("answer", epilog=MODEL_SPEC_HELP)
@click.argument("bench_path", metavar="BENCH", type=click.Path(exists=True))
@click.option("--model", "-m", default="local", show_default=True, help="The model (see below).")
@click.option("--bench", "bench_name", default=None, metavar="NAME",
              help=f"Benchmark format: {', '.join(BENCH_FORMATS)} (default: detected from the "
                   "fields).")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map id, text, category, input or instances to a column, "
                   "e.g. --field text=question --field id=qid.")
@click.option("--system", default=None, help="A system message sent with every question.")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True)
@click.option("--output", "-o", "output", required=True, type=click.Path(dir_okay=False),
              help="The answers file (JSONL), written atomically when the run finishes.")
@click.option("--run-dir", default=None, type=click.Path(file_okay=False),
              help="Run directory for resume and bookkeeping (default: OUTPUT.run beside it).")
@run_options
def command(bench_path: str, model: str, bench_name: str | None, fields: tuple[str, ...],
            system: str | None, temperature: float, max_tokens: int, output: str,
            run_dir: str | None, **kwargs: Any) -> None:
    """Answer every question of the benchmark file BENCH with MODEL.

    BENCH is a Vicuna, Self-Instruct, WizardLM (Evol-Instruct) or Koala question file, or any
    file whose columns --field names. Each answer row keeps the question id, the question,
    its category and the model: {question_id, question, category, answer, model, bench}.
    Feed two such files to `synthcodec compare`.
    """
    options = options_from(kwargs)
    fmt = resolve_format(bench_path, bench_name, parse_field_map(fields))
    summary, n = answer_file(bench_path, output, model=model, fmt=fmt, system=system,
                             temperature=temperature, max_tokens=max_tokens, run_dir=run_dir,
                             options=options)
    code = print_summary(summary)
    if summary.interrupted:
        raise SystemExit(code)
    click.echo(f"wrote {output} ({n} answers)", err=True)
    if summary.failed:
        click.echo(f"note: {summary.failed} questions have no answer yet; run the same command "
                   "again to retry them before comparing", err=True)
    if code:
        raise SystemExit(code)