"""`synthcodec select`: keep the rows a signal ranks best (AlpaGasus' score ≥ 4.5 by
default; IFD, length, random or any column); the logic is synthcodec.stages.select."""

from __future__ import annotations

import sys

import click

from synthcodec.formats import FORMATS
from synthcodec.report.histogram import text_histogram
from synthcodec.stages.rate import SCORE
from synthcodec.stages.select import embedder, select_rows
from synthcodec.stages.select_rules import DEFAULT_MIN_SCORE, DIVERSE, rule_from_options


@click.command("select")
@click.argument("source_path", metavar="RUN_OR_FILE", type=click.Path(exists=True))
@click.option("--output", "-o", "out", required=True, type=click.Path(),
              help="Where the kept rows go (a folder for --format hf).")
@click.option("--by", default=None, metavar="SIGNAL",
              help="score (default), ifd, target_ifd, length, random, or any numeric column.")
@click.option("--top", type=click.IntRange(1), default=None,
              help="Keep the K best rows (equal values: the earlier row wins).")
@click.option("--frac", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Keep this fraction of the rows, best first (e.g. 0.05).")
@click.option("--min", "low", type=float, default=None, help="Keep only rows with value ≥ this.")
@click.option("--max", "high", type=float, default=None,
              help="Keep only rows with value ≤ this (for ifd it replaces the IFD < 1 rule).")
@click.option("--lowest", is_flag=True, help="Lower values rank first.")
@click.option("--min-score", type=float, default=None,
              help=f"Same as --by score --min (the default rule, {DEFAULT_MIN_SCORE:g}).")
@click.option("--random", "random_n", type=click.IntRange(1), default=None,
              help="Same as --by random --top N (the papers' baseline); see --seed.")
@click.option("--seed", type=int, default=None,
              help="Seed of the random key (default: the run's random column, else 0).")
@click.option("--diverse", type=click.Choice(DIVERSE), default=None,
              help="minhash: skip near-duplicates of better-ranked kept rows; kcenter: spread "
                   "the K rows over the embeddings of the 4K best (--embed-model).")
@click.option("--dup-threshold", type=click.FloatRange(0, 0.98, min_open=True), default=0.7,
              show_default=True, help="--diverse minhash: Jaccard similarity of a near-duplicate.")
@click.option("--embed-model", default="local", show_default=True,
              help="--diverse kcenter: the embedding model (local, gguf:, or an /v1/embeddings "
                   "server as NAME@URL).")
@click.option("--evaluate", "labels", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Labelled rows (your keep/drop decisions): report each "
                                 "signal's AUC and precision at the kept size.")
@click.option("--label-field", default="label", show_default=True,
              help="--evaluate: the label column.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl: the rows as they are; alpaca: JSON array of instruction/input/"
                   "output; openai: chat-messages JSONL; sharegpt: JSON conversations; hf: a "
                   "Hugging Face dataset folder (needs synthcodec[hf]).")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Column mapping for the export (default: the run's, or response=output).")
@click.option("--score-field", default=None, help="The older name of --by COLUMN.")
def command(source_path: str, out: str, by: str | None, top: int | None, frac: float | None,
            low: float | None, high: float | None, lowest: bool, min_score: float | None,
            random_n: int | None, seed: int | None, diverse: str | None, dup_threshold: float,
            embed_model: str, labels: str | None, label_field: str, fmt: str,
            fields: tuple[str, ...], score_field: str | None) -> None:
    """Keep the rows of a `synthcodec rate` or `score` RUN (or any file) that a signal ranks best.

    Default: score ≥ 4.5 (AlpaGasus). Writes the kept rows to OUT, the others to OUT's name +
    .rejected.jsonl, a summary to .summary.json, and a histogram of the signal (PNG) to
    RUN/SIGNAL.png (scores.png for the score), or beside OUT when the input is a file.
    """
    rule = rule_from_options(by, top, frac, low, high, lowest, min_score, random_n, seed,
                             diverse, dup_threshold, score_field).checked()
    embed = embedder(embed_model) if rule.diverse == "kcenter" else None
    sel = select_rows(source_path, out, rule, fmt=fmt, fields=fields, embed=embed,
                      evaluate=labels, label_field=label_field)
    err = sys.stderr
    n = sel.summary["rated"]
    print(f"{'scores' if rule.by == SCORE else rule.by} of {n} rows:", file=err)
    for line in text_histogram(sel.bins):
        print("  " + line, file=err)
    print(f"kept {sel.kept} of {n} ({100 * sel.kept / n:.1f}%): {sel.rule}", file=err)
    if "flagged_ifd_ge_1" in sel.summary:
        print(f"{sel.summary['flagged_ifd_ge_1']} rows have {rule.by} ≥ 1 (the instruction does "
              "not help the model)", file=err)
    if sel.summary.get("near_duplicates_skipped"):
        print(f"skipped {sel.summary['near_duplicates_skipped']} near-duplicates of kept rows",
              file=err)
    size = rule.size(n)
    if size is not None and size > sel.kept:
        print(f"note: asked for {size} rows but only {sel.kept} qualify", file=err)
    if sel.source.failed:
        print(f"note: {sel.source.failed} rows failed in the run and are in neither output "
              f"(see {sel.source.run_dir / 'failed.jsonl' if sel.source.run_dir else 'the run'})",
              file=err)
    evaluation = sel.summary.get("evaluation")
    if evaluation:
        print(f"against {evaluation['labels']}: {evaluation['matched']} labelled rows, "
              f"{evaluation['positives']} to keep; precision at {evaluation['k']}:", file=err)
        for signal, result in evaluation["signals"].items():
            a, p = result["auc"], result["precision_at_k"]
            print(f"  {signal:<12} AUC {'–' if a is None else f'{a:.3f}'}  precision "
                  f"{'–' if p is None else f'{p:.3f}'}", file=err)
    o = sel.outputs
    print(f"wrote {o['kept']} ({fmt}, {sel.kept} rows), {o['rejected']} ({sel.rejected} rows), "
          f"{o['summary']}, {o['plot']}", file=err)
