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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import InputError, UserError
from synthcodec.export import export, require_extra, write_jsonl
from synthcodec.histogram import plot_histogram, score_bins
from synthcodec.io import Row, iter_rows
from synthcodec.rundir_reader import review_adjust
from synthcodec.stages.rate import DEFAULT_FIELDS, SCORE, field_mapping
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


@dataclass
class Selection:
    """What `select_rows` kept and wrote (the summary is also in OUT's .summary.json)."""

    kept: int
    rejected: int
    rule: str
    summary: dict[str, Any]
    bins: list[tuple[float, int]]
    outputs: dict[str, Path]
    source: Source


def select_rows(source_path: str | Path, out: str | Path, *, min_score: float | None = None,
                top: int | None = None, random_n: int | None = None, seed: int | None = None,
                fmt: str = "jsonl", fields: tuple[str, ...] | list[str] = (),
                score_field: str = SCORE) -> Selection:
    """Keep the best-rated rows of a rate run (or any file with a score column), export them
    to `out` in `fmt`, the others to OUT + .rejected.jsonl, a summary and a histogram."""
    rules = [name for name, v in (("--min-score", min_score), ("--top", top),
                                  ("--random", random_n)) if v is not None]
    if len(rules) > 1:
        raise UserError(f"give only one of --min-score, --top, --random (got {', '.join(rules)})")
    if seed is not None and random_n is None:
        raise UserError("--seed only applies to --random")
    if not rules:
        min_score = DEFAULT_MIN_SCORE
    seed = 0 if seed is None else seed
    require_extra(fmt)  # a missing optional package stops us before anything is written

    src = open_source(Path(source_path), tuple(fields))
    out_path = Path(out)
    if out_path.resolve() == src.rows.resolve():
        raise UserError(f"-o {out} would overwrite the input")
    scores = read_scores(src.rows, score_field)
    if not scores:
        raise UserError(f"{src.rows} has no rated rows")
    keep = choose(scores, min_score=min_score, top=top, random_n=random_n, seed=seed)
    keep = review_adjust(src.run_dir, src.rows, keep)  # RUN/review.jsonl (synthcodec view)

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
    return Selection(n_kept, n_rejected, rule, summary, bins,
                     {"kept": out_path, "rejected": rejected_path, "summary": summary_path,
                      "plot": png}, src)
