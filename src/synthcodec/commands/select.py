"""`synthcodec select`: keep the best-rated rows (AlpaGasus §2.2); the logic is
synthcodec.stages.select."""

from __future__ import annotations

import sys

import click

from synthcodec.export import FORMATS
from synthcodec.histogram import text_histogram
from synthcodec.stages.rate import SCORE
from synthcodec.stages.select import DEFAULT_MIN_SCORE, select_rows


@click.command("select")
@click.argument("source_path", metavar="RUN_OR_FILE", type=click.Path(exists=True))
@click.option("--output", "-o", "out", required=True, type=click.Path(),
              help="Where the kept rows go (a folder for --format hf).")
@click.option("--min-score", type=float, default=None,
              help=f"Keep rows with score ≥ this (the default rule, {DEFAULT_MIN_SCORE:g}).")
@click.option("--top", type=click.IntRange(1), default=None,
              help="Keep the N best rows (equal scores: the earlier row wins).")
@click.option("--random", "random_n", type=click.IntRange(1), default=None,
              help="Keep N rows at random (the paper's baseline); see --seed.")
@click.option("--seed", type=int, default=None, help="Seed for --random (default 0).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl: the rated rows as they are; alpaca: JSON array of instruction/input/"
                   "output; openai: chat-messages JSONL; sharegpt: JSON conversations; hf: a "
                   "Hugging Face dataset folder (needs synthcodec[hf]).")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Column mapping for the export (default: the rate run's, or response=output).")
@click.option("--score-field", default=SCORE, show_default=True, help="The column holding the score.")
def command(source_path: str, out: str, min_score: float | None, top: int | None,
            random_n: int | None, seed: int | None, fmt: str, fields: tuple[str, ...],
            score_field: str) -> None:
    """Keep the best-rated rows of a `synthcodec rate` RUN (or any file with a score column).

    Writes the kept rows to OUT, the others with their scores to OUT's name + .rejected.jsonl,
    a summary to .summary.json, and a score histogram (PNG) to RUN/scores.png, or beside OUT
    when the input is a file.
    """
    sel = select_rows(source_path, out, min_score=min_score, top=top, random_n=random_n,
                      seed=seed, fmt=fmt, fields=fields, score_field=score_field)
    err = sys.stderr
    rated = sel.summary["rated"]
    print(f"scores of {rated} rated rows:", file=err)
    for line in text_histogram(sel.bins):
        print("  " + line, file=err)
    print(f"kept {sel.kept} of {rated} ({100 * sel.kept / rated:.1f}%): {sel.rule}", file=err)
    if top is not None and top > rated or random_n is not None and random_n > rated:
        print(f"note: asked for {top or random_n} rows but only {rated} are rated", file=err)
    if sel.source.failed:
        print(f"note: {sel.source.failed} rows could not be rated and are in neither output "
              f"(see {sel.source.run_dir / 'failed.jsonl' if sel.source.run_dir else 'the run'})",
              file=err)
    o = sel.outputs
    print(f"wrote {o['kept']} ({fmt}, {sel.kept} rows), {o['rejected']} ({sel.rejected} rows), "
          f"{o['summary']}, {o['plot']}", file=err)
