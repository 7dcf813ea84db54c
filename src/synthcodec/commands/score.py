"""`synthcodec score`: add selection signals (IFD, length, a random key) to every row; the
logic is synthcodec.stages.score."""

from __future__ import annotations

import sys
from typing import Any

import click

from synthcodec.commands.printing import print_summary
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import options_from, run_options
from synthcodec.stages.rate import field_mapping
from synthcodec.stages.score import DEFAULT_SIGNALS, SIGNALS, parse_signals, score_file


@click.command("score", epilog=MODEL_SPEC_HELP)
@click.argument("input_path", metavar="DATA", type=click.Path(exists=True))
@click.option("--signals", default=",".join(DEFAULT_SIGNALS), show_default=True,
              help=f"Comma-separated: {', '.join(SIGNALS)}.")
@click.option("--model", "-m", default="local", show_default=True,
              help="The model that computes ifd (Superfiltering: a small one is enough).")
@click.option("--target", default=None, metavar="MODEL",
              help="The model you will tune: computes target_ifd (a selection tailored to it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random key.")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map instruction/input/response to input columns (default: response=output).")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; re-running the same command resumes it).")
@run_options
def command(input_path: str, signals: str, model: str, target: str | None, seed: int,
            fields: tuple[str, ...], run_dir: str, **kwargs: Any) -> None:
    """Add selection signals (IFD, response length, a seeded random key) to every row of DATA.

    IFD is the model's loss on the response after the instruction divided by its loss on the
    response alone (Cherry LLM / Superfiltering); rows with IFD ≥ 1 are flagged (ifd_ge_1).
    RUN/output.jsonl holds each row plus the signal columns. Then:
    synthcodec select RUN --by ifd --frac 0.05 -o kept.json
    """
    options = options_from(kwargs)
    summary = score_file(input_path, run_dir, signals=parse_signals(signals), model=model,
                         target=target, seed=seed, mapping=field_mapping(fields),
                         options=options)
    code = print_summary(summary)
    if summary.kept and not summary.interrupted:
        by = next((s for s in ("ifd", "target_ifd", "length") if s in parse_signals(signals)),
                  "random")
        print(f"next: synthcodec select {summary.run_dir} --by {by} --frac 0.1 -o kept.json",
              file=sys.stderr)
    if code:
        raise SystemExit(code)
