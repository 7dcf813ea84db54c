"""What `select` ranks by: a rule (`Rule`: a signal and how much of it), the sources it
reads (a rate or score run, or any file) and each row's value of the signal.

A signal is score, ifd, target_ifd, length, random, or any numeric column; higher values
rank first (`lowest` flips that); ties go to the earlier row, so a choice is
deterministic. `--by score` alone keeps AlpaGasus' score ≥ 4.5; `--by ifd` leaves out the
rows flagged IFD ≥ 1 (Cherry LLM, Superfiltering) unless `max` says otherwise. `length` and
`random` are computed from the row when the source has no such column (a rate run), so the
two baselines work on any source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from synthcodec.errors import InputError, UserError
from synthcodec.io import iter_rows
from synthcodec.stages.rate import DEFAULT_FIELDS, SCORE, field_mapping
from synthcodec.stages.score import IFD_SIGNALS, random_key, response_length
from synthcodec.store import read_json

DEFAULT_MIN_SCORE = 4.5
COMPUTED = ("length", "random")  # computed from the row when the source has no such column
DIVERSE = ("minhash", "kcenter")
MAX_DUP_THRESHOLD = 0.98  # datasketch's LSH needs two bands of 128 permutations
SOURCE_STAGES = ("rate", "score")


@dataclass(frozen=True)
class Rule:
    """Which rows to keep: see the module docstring."""

    by: str = SCORE
    top: int | None = None
    frac: float | None = None
    min: float | None = None
    max: float | None = None
    lowest: bool = False
    seed: int | None = None  # `by = "random"`: recompute the key with this seed
    diverse: str | None = None
    dup_threshold: float = 0.7  # minhash: Jaccard similarity that makes a near-duplicate

    def checked(self) -> "Rule":
        """This rule with its defaults filled in; UserError for one that makes no sense."""
        if self.top is not None and self.frac is not None:
            raise UserError("give only one of --top and --frac")
        if self.top is not None and self.top < 1:
            raise UserError("--top must be at least 1")
        if self.frac is not None and not 0 < self.frac <= 1:
            raise UserError("--frac must be in (0, 1]")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise UserError(f"--min {self.min:g} is above --max {self.max:g}")
        if self.seed is not None and self.by != "random":
            raise UserError("--seed only applies to --by random (--random)")
        if self.diverse is not None and self.diverse not in DIVERSE:
            raise UserError(f"--diverse: use {' or '.join(DIVERSE)}")
        if self.diverse == "kcenter" and self.size_rule is None:
            raise UserError("--diverse kcenter needs the size: --top K or --frac F")
        if not 0 < self.dup_threshold <= MAX_DUP_THRESHOLD:
            raise UserError(f"--dup-threshold must be in (0, {MAX_DUP_THRESHOLD:g}] (MinHash "
                            "with 128 permutations cannot test for more similar)")
        if self.size_rule is None and self.min is None and self.max is None:
            if self.by != SCORE:
                raise UserError(f"--by {self.by}: say how much to keep (--top K, --frac F, "
                                "--min or --max)")
            return replace(self, min=DEFAULT_MIN_SCORE)  # AlpaGasus
        return self

    @property
    def size_rule(self) -> int | float | None:
        return self.top if self.top is not None else self.frac

    def size(self, n: int) -> int | None:
        """How many rows of `n` the rule keeps at most (None: as many as pass the bounds)."""
        if self.top is not None:
            return self.top
        if self.frac is not None:
            return max(1, math.floor(self.frac * n + 0.5))
        return None

    def passes(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return False
        if self.max is not None:
            return value <= self.max
        return not (self.by in IFD_SIGNALS and value >= 1.0)  # flagged: the instruction no help

    def describe(self) -> str:
        """e.g. "top 100 by ifd (ifd < 1), no near-duplicates"."""
        order = "lowest" if self.lowest else ""
        if self.by == "random" and self.size_rule is not None:  # the papers' baseline
            size = str(self.top) if self.top is not None else f"{100 * (self.frac or 0):g}%"
            return f"random {size} (seed {self.seed or 0})"
        if self.top is not None:
            text = f"{order or 'top'} {self.top} by {self.by}"
        elif self.frac is not None:
            text = f"{order or 'top'} {100 * self.frac:g}% by {self.by}"
        else:
            text = self.by
        bounds = []
        if self.min is not None:
            bounds.append(f"{self.by} ≥ {self.min:g}")
        if self.max is not None:
            bounds.append(f"{self.by} ≤ {self.max:g}")
        elif self.by in IFD_SIGNALS:
            bounds.append(f"{self.by} < 1")
        if self.size_rule is None:
            text = " and ".join(bounds)
        elif bounds:
            text += f" ({', '.join(bounds)})"
        if self.by == "random":
            text += f" (seed {self.seed or 0})"
        if self.diverse == "minhash":
            text += ", no near-duplicates"
        elif self.diverse == "kcenter":
            text += ", spread by embeddings (k-center)"
        return text


def rule_from_options(by: str | None, top: int | None, frac: float | None,
                      low: float | None, high: float | None, lowest: bool,
                      min_score: float | None, random_n: int | None, seed: int | None,
                      diverse: str | None, dup_threshold: float,
                      score_field: str | None) -> Rule:
    """The rule the options name; --min-score, --random and --score-field are the older
    spellings of --by score --min, --by random --top and --by COLUMN."""
    if score_field is not None:
        if by is not None:
            raise UserError("give only one of --by and --score-field (the older name of --by)")
        by = score_field
    if min_score is not None:
        if by not in (None, SCORE) and score_field is None:
            raise UserError("--min-score goes with --by score; use --min for other signals")
        if low is not None:
            raise UserError("give only one of --min-score and --min")
        low = min_score
    if random_n is not None:
        rules = [name for name, v in (("--min-score", min_score), ("--top", top),
                                      ("--frac", frac)) if v is not None]
        if rules or by not in (None, "random"):
            raise UserError(f"give only one of --random and {rules[0] if rules else '--by'}")
        by, top = "random", random_n
    if seed is not None and by != "random":
        raise UserError("--seed only applies to --by random (--random)")
    if score_field is not None and all(v is None for v in (top, frac, low, high)):
        low = DEFAULT_MIN_SCORE  # the score rule, on the named score column
    return Rule(by=by or SCORE, top=top, frac=frac, min=low, max=high, lowest=lowest,
                seed=seed, diverse=diverse, dup_threshold=dup_threshold)


def ranked(values: list[float], rule: Rule) -> list[int]:
    """The rows that pass `rule`'s bounds, best first (ties: the earlier row first)."""
    sign = 1.0 if rule.lowest else -1.0
    candidates = [i for i, v in enumerate(values) if rule.passes(v)]
    return sorted(candidates, key=lambda i: (sign * values[i], i))


def choose(values: list[float], rule: Rule) -> list[int]:
    """The rows `rule` keeps, best first (without a diversity pass)."""
    rule = rule.checked()
    order = ranked(values, rule)
    size = rule.size(len(values))
    return order if size is None else order[:size]


@dataclass(frozen=True)
class Source:
    """Where the rows are, and how their columns map to instruction/input/response."""

    rows: Path
    mapping: dict[str, str]
    run_dir: Path | None = None
    failed: int = 0  # rows the run could not rate or score (not part of the selection)
    stage: str | None = None


def open_source(path: Path, fields: tuple[str, ...]) -> Source:
    """A finished `rate` or `score` run directory, or any file (JSONL, JSON, CSV, Parquet,
    HF)."""
    if path.is_dir() and (path / "config.json").exists():
        config = read_json(path / "config.json", {})
        stage = config.get("stage")
        if stage not in SOURCE_STAGES:
            raise UserError(f"{path} is a '{stage}' run, not a 'rate' or 'score' run")
        manifest = read_json(path / "manifest.json", {})
        if manifest.get("status") != "complete" or not (path / "output.jsonl").exists():
            raise UserError(f"{path} is not finished: run the same 'synthcodec {stage}' command "
                            "again to finish it, then select")
        # The run remembers how the user mapped columns; --field still overrides it.
        mapping = field_mapping(fields, defaults=config.get("fields") or DEFAULT_FIELDS)
        failed = int(manifest.get("counts", {}).get("failed", 0))
        return Source(path / "output.jsonl", mapping, path, failed, stage)
    return Source(path, field_mapping(fields))


def row_texts(row: Mapping[str, Any], mapping: Mapping[str, str]) -> tuple[str, str, str]:
    """(instruction, input, response) of a row through the column mapping ("" if absent)."""
    def get(name: str) -> str:
        value = row.get(mapping.get(name, name))
        return value if isinstance(value, str) else ""
    return get("instruction"), get("input"), get("response")


def value_reader(src: Source, rule: Rule, first: Mapping[str, Any]
                 ) -> Callable[[int, Mapping[str, Any]], float]:
    """`read(line, row)`: the rule's signal of a row of `src` (a column, or computed from the
    row); `first`, the source's first row, says whether the source has the column."""
    by = rule.by
    if by in COMPUTED and (by not in first or (by == "random" and rule.seed is not None)):
        def computed(line: int, row: Mapping[str, Any]) -> float:
            instruction, input_text, response = row_texts(row, src.mapping)
            return (float(response_length(response)) if by == "length" else
                    random_key(rule.seed or 0, instruction, input_text, response))
        return computed

    def column(line: int, row: Mapping[str, Any]) -> float:
        value = row.get(by)
        if value is None:
            hint = ("score the data first with 'synthcodec score'" if by in IFD_SIGNALS else
                    "rate the data first with 'synthcodec rate'" if by == SCORE else
                    "check the column's name")
            raise InputError(src.rows, f"missing ({hint}, or name another column with --by)",
                             line=line, field=by)
        try:
            number = float(value)  # CSV gives strings
        except (TypeError, ValueError):
            raise InputError(src.rows, f"not a number: {value!r}", line=line, field=by) from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise InputError(src.rows, f"not a finite number: {value!r}", line=line, field=by)
        return number
    return column


def read_values(src: Source, rule: Rule) -> list[float]:
    """The rule's signal for every row of the source (one pass; see value_reader)."""
    values: list[float] = []
    read = None
    for line, row in iter_rows(src.rows):
        if read is None:
            read = value_reader(src, rule, row)
        values.append(read(line, row))
    return values


def read_scores(path: Path, score_field: str = SCORE) -> list[float]:
    """The score column of a file, checked (one float per row)."""
    return read_values(Source(path, dict(DEFAULT_FIELDS)), Rule(by=score_field))


