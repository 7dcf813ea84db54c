"""`synthcodec select`: keep the best-rated rows (AlpaGasus §2.2) and export them.

Exactly one rule: `--min-score T` (score ≥ T, the paper's T = 4.5), `--top N` (highest
scores; ties go to the earlier row, so the choice is deterministic), or `--random N --seed S`
(the paper's same-size random baseline). Scores are read in a first pass (one float per
row); the rows themselves are streamed in later passes, so memory stays flat.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from synthcodec.commands.rate import DEFAULT_FIELDS, SCORE, field_mapping
from synthcodec.errors import InputError, UserError
from synthcodec.export import FORMATS, export, require_extra, write_jsonl
from synthcodec.histogram import plot_histogram, score_bins, text_histogram
from synthcodec.io import Row, iter_rows
from synthcodec.store import write_json

DEFAULT_MIN_SCORE = 4.5
_KNOWN_SUFFIXES = {".jsonl", ".json", ".ndjson"}


@dataclass(frozen=True)
class Source:
    """Where the rated rows are, and how their columns map to instruction/input/response."""

    rows: Path
    mapping: dict[str, str]
    run_dir: Path | None = None
    failed: int = 0  # rows the rating run could not rate (not part of the selection)


def open_source(path: Path, fields: tuple[str, ...]) -> Source:
    """A finished `rate` run directory, or any rated file (JSONL, JSON, CSV, Parquet, HF)."""
    if path.is_dir() and (path / "config.json").exists():
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if config.get("stage") != "rate":
            raise UserError(f"{path} is a '{config.get('stage')}' run, not a 'rate' run")
        manifest_path = path / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
        if manifest.get("status") != "complete" or not (path / "output.jsonl").exists():
            raise UserError(f"{path} is not finished: run the same 'synthcodec rate' command again "
                            "to finish it, then select")
        # The run remembers how the user mapped columns; --field still overrides it.
        mapping = field_mapping(fields, defaults=config.get("fields") or DEFAULT_FIELDS)
        failed = int(manifest.get("counts", {}).get("failed", 0))
        return Source(path / "output.jsonl", mapping, path, failed)
    return Source(path, field_mapping(fields))


def read_scores(path: Path, score_field: str) -> list[float]:
    scores: list[float] = []
    for line, row in iter_rows(path):
        value = row.get(score_field)
        if value is None:
            raise InputError(path, "missing (rate the data first with 'synthcodec rate', or name "
                             "the score column with --score-field)", line=line, field=score_field)
        try:
            score = float(value)  # CSV gives strings
        except (TypeError, ValueError):
            raise InputError(path, f"not a number: {value!r}", line=line, field=score_field) from None
        if isinstance(value, bool) or not math.isfinite(score):
            raise InputError(path, f"not a finite number: {value!r}", line=line, field=score_field)
        scores.append(score)
    return scores


def choose(scores: list[float], *, min_score: float | None = None, top: int | None = None,
           random_n: int | None = None, seed: int = 0) -> set[int]:
    """Indices of the rows to keep under exactly one rule."""
    if sum(x is not None for x in (min_score, top, random_n)) != 1:
        raise ValueError("give exactly one of min_score, top, random_n")
    if min_score is not None:
        return {i for i, s in enumerate(scores) if s >= min_score}  # ≥, as in the paper
    if top is not None:
        # Sort by score descending, then input position: equal scores keep the earlier row.
        return set(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top])
    assert random_n is not None
    return set(random.Random(seed).sample(range(len(scores)), min(random_n, len(scores))))


def sibling(out: Path, suffix: str) -> Path:
    """kept.jsonl -> kept.<suffix>; a folder (hf) -> folder.<suffix>."""
    stem = out.with_suffix("") if out.suffix.lower() in _KNOWN_SUFFIXES else out
    return stem.with_name(stem.name + suffix)


def _rows_where(path: Path, keep: set[int], wanted: bool) -> Iterator[tuple[int, Row]]:
    for i, (line, row) in enumerate(iter_rows(path)):
        if (i in keep) == wanted:
            yield line, row


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
    rules = [name for name, v in (("--min-score", min_score), ("--top", top),
                                  ("--random", random_n)) if v is not None]
    if len(rules) > 1:
        raise click.UsageError(f"give only one of --min-score, --top, --random (got {', '.join(rules)})")
    if seed is not None and random_n is None:
        raise click.UsageError("--seed only applies to --random")
    if not rules:
        min_score = DEFAULT_MIN_SCORE
    seed = 0 if seed is None else seed
    require_extra(fmt)  # a missing optional package stops us before anything is written

    src = open_source(Path(source_path), fields)
    out_path = Path(out)
    if out_path.resolve() == src.rows.resolve():
        raise UserError(f"-o {out} would overwrite the input")
    scores = read_scores(src.rows, score_field)
    if not scores:
        raise UserError(f"{src.rows} has no rated rows")
    keep = choose(scores, min_score=min_score, top=top, random_n=random_n, seed=seed)

    n_kept = export(fmt, out_path, _rows_where(src.rows, keep, True), src.mapping, src.rows)
    rejected_path = sibling(out_path, ".rejected.jsonl")
    n_rejected = write_jsonl(rejected_path, (row for _, row in _rows_where(src.rows, keep, False)))

    if min_score is not None:
        rule, threshold = f"score ≥ {min_score:g}", min_score
    elif top is not None:
        rule, threshold = f"top {top} by score", None
    else:
        rule, threshold = f"random {random_n} (seed {seed})", None
    bins = score_bins(scores)
    png = (src.run_dir / "scores.png") if src.run_dir else sibling(out_path, ".scores.png")
    plot_histogram(png, bins, threshold=threshold,
                   title=f"{len(scores)} rated rows; kept {n_kept} ({rule})")
    summary_path = sibling(out_path, ".summary.json")
    summary: dict[str, Any] = {
        "source": str(src.run_dir or src.rows),
        "rule": {"min_score": min_score, "top": top, "random": random_n,
                 "seed": seed if random_n is not None else None},
        "rated": len(scores),
        "kept": n_kept,
        "rejected": n_rejected,
        "kept_fraction": n_kept / len(scores),
        "failed_in_run": src.failed,
        "score_mean": sum(scores) / len(scores),
        "score_min": min(scores),
        "score_max": max(scores),
        "histogram": {f"{value:g}": n for value, n in bins},
        "format": fmt,
        "outputs": {"kept": str(out_path), "rejected": str(rejected_path), "plot": str(png)},
    }
    write_json(summary_path, summary)

    err = sys.stderr
    print(f"scores of {len(scores)} rated rows:", file=err)
    for line in text_histogram(bins):
        print("  " + line, file=err)
    print(f"kept {n_kept} of {len(scores)} ({100 * n_kept / len(scores):.1f}%): {rule}", file=err)
    if top is not None and top > len(scores) or random_n is not None and random_n > len(scores):
        print(f"note: asked for {top or random_n} rows but only {len(scores)} are rated", file=err)
    if src.failed:
        print(f"note: {src.failed} rows could not be rated and are in neither output "
              f"(see {src.run_dir / 'failed.jsonl' if src.run_dir else 'the run'})", file=err)
    print(f"wrote {out_path} ({fmt}, {n_kept} rows), {rejected_path} ({n_rejected} rows), "
          f"{summary_path}, {png}", file=err)
