"""`synthcodec score`: add selection signals (IFD, length, a random key) to every row; the
logic is synthcodec.stages.score."""

from __future__ import annotations

import sys
from typing import Any

import click

from synthcodec.commands.printing import print_summary
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import options_from, run_options
from synthcodec.settings import click_options, from_kwargs
from synthcodec.stages.rate import field_mapping
from synthcodec.stages.score import DEFAULT_SIGNALS, ScoreStage, parse_signals, score_file


@click.command("score", epilog=MODEL_SPEC_HELP)
@click.argument("input_path", metavar="DATA", type=click.Path(exists=True))
@click_options(ScoreStage, "signals", "model", "target", "seed",
               defaults={"signals": ",".join(DEFAULT_SIGNALS)})
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map instruction/input/response to input columns (default: response=output).")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; re-running the same command resumes it).")
@run_options
def command(input_path: str, fields: tuple[str, ...], run_dir: str, **kwargs: Any) -> None:
    """Add selection signals (IFD, response length, a seeded random key) to every row of DATA.

    IFD is the model's loss on the response after the instruction divided by its loss on the
    response alone (Cherry LLM / Superfiltering); rows with IFD ≥ 1 are flagged (ifd_ge_1).
    RUN/output.jsonl holds each row plus the signal columns. Then:
    synthcodec select RUN --by ifd --frac 0.05 -o kept.json
    """
    settings = from_kwargs(ScoreStage, kwargs)
    signals = parse_signals(settings.pop("signals"))
    options = options_from(kwargs)
    summary = score_file(input_path, run_dir, signals=signals, mapping=field_mapping(fields),
                         options=options, **settings)
    code = print_summary(summary)
    if summary.kept and not summary.interrupted:
        by = next((s for s in ("ifd", "target_ifd", "length") if s in signals),
                  "random")
        print(f"next: synthcodec select {summary.run_dir} --by {by} --frac 0.1 -o kept.json",
              file=sys.stderr)
    if code:
        raise SystemExit(code)
