"""`synthcodec select`: keep the rows one signal ranks best, and export them.

A rule (`Rule`) is a signal (`by`: score, ifd, target_ifd, length, random, or any numeric
column) and how much of it: `top` K rows, `frac` F of the rows, and/or `min`/`max` bounds on
the value; higher values rank first (`lowest` flips that). Ties go to the earlier row, so a
choice is deterministic. The defaults keep the papers' rules: `--by score` alone is
AlpaGasus' score ≥ 4.5; `--by ifd` leaves out the rows flagged IFD ≥ 1 (Cherry LLM,
Superfiltering) unless `max` says otherwise. `length` and `random` are computed from the row
when the source has no such column (a rate run), so the two baselines work on any source.
`diverse` adds a pass over the ranking (synthcodec.diversity): `minhash` skips rows that
nearly repeat a better-ranked kept row; `kcenter` spreads the K rows over the embeddings of
the KCENTER_POOL × K best.

The signal is read in a first pass (one float per row); rows are streamed in later passes,
so memory stays flat (the diversity passes hold the candidates' texts or vectors).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from synthcodec.errors import InputError, UserError
from synthcodec.export import export, require_extra, write_jsonl
from synthcodec.histogram import plot_histogram, score_bins, value_bins
from synthcodec.instruction import join_instruction
from synthcodec.io import Row, iter_rows
from synthcodec.llm.client import RecordFailed
from synthcodec.rundir_reader import review_adjust
from synthcodec.stages.rate import DEFAULT_FIELDS, SCORE, field_mapping
from synthcodec.stages.score import random_key, response_length
from synthcodec.stages.select_eval import IFD_SIGNALS, auc, goodness, precision_at, read_labels
from synthcodec.store import write_json

DEFAULT_MIN_SCORE = 4.5
COMPUTED = ("length", "random")  # computed from the row when the source has no such column
DIVERSE = ("minhash", "kcenter")
MAX_DUP_THRESHOLD = 0.98  # datasketch's LSH needs two bands of 128 permutations
KCENTER_POOL = 4  # k-center picks K of the 4K best rows
SOURCE_STAGES = ("rate", "score")
_KNOWN_SUFFIXES = {".jsonl", ".json", ".ndjson"}


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
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        stage = config.get("stage")
        if stage not in SOURCE_STAGES:
            raise UserError(f"{path} is a '{stage}' run, not a 'rate' or 'score' run")
        manifest_path = path / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
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


def read_values(src: Source, rule: Rule) -> list[float]:
    """The rule's signal for every row of the source (a column, or computed from the row)."""
    by = rule.by
    values: list[float] = []
    computed: bool | None = None
    for line, row in iter_rows(src.rows):
        if computed is None:  # the first row says whether the source has the column
            computed = by in COMPUTED and (by not in row or (by == "random"
                                                            and rule.seed is not None))
        if computed:
            instruction, input_text, response = row_texts(row, src.mapping)
            values.append(float(response_length(response)) if by == "length" else
                          random_key(rule.seed or 0, instruction, input_text, response))
            continue
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
        values.append(number)
    return values


def read_scores(path: Path, score_field: str = SCORE) -> list[float]:
    """The score column of a file, checked (one float per row)."""
    return read_values(Source(path, dict(DEFAULT_FIELDS)), Rule(by=score_field))


def sibling(out: Path, suffix: str) -> Path:
    """kept.jsonl -> kept.<suffix>; a folder (hf) -> folder.<suffix>."""
    stem = out.with_suffix("") if out.suffix.lower() in _KNOWN_SUFFIXES else out
    return stem.with_name(stem.name + suffix)


def _rows_where(path: Path, keep: set[int], wanted: bool) -> Iterator[tuple[int, Row]]:
    for i, (line, row) in enumerate(iter_rows(path)):
        if (i in keep) == wanted:
            yield line, row


def _prompts(src: Source, rows: list[int], whole: bool) -> dict[int, str]:
    """The text of each of `rows` (one pass): the prompt, or the whole row (`whole`)."""
    wanted = set(rows)
    out: dict[int, str] = {}
    for i, (_, row) in enumerate(iter_rows(src.rows)):
        if i in wanted:
            instruction, input_text, response = row_texts(row, src.mapping)
            prompt = join_instruction(instruction, input_text)
            out[i] = f"{prompt}\n\n{response}" if whole else prompt
    return out


def diverse_choice(src: Source, order: list[int], rule: Rule, n: int, *,
                   embed: Any = None) -> tuple[list[int], dict[str, Any]]:
    """The diversity pass over the ranked rows: (rows kept, best first; what it did)."""
    from synthcodec import diversity

    size = rule.size(n)
    if rule.diverse == "minhash":
        texts = _prompts(src, order, whole=True)
        kept, dropped = diversity.drop_near_duplicates(
            ((i, texts[i]) for i in order), keep=size, threshold=rule.dup_threshold)
        return kept, {"near_duplicates_skipped": len(dropped),
                      "dup_threshold": rule.dup_threshold}
    assert size is not None and embed is not None
    pool = order[:KCENTER_POOL * size]
    texts = _prompts(src, pool, whole=False)
    vectors = embed([texts[i] for i in pool])
    picks = diversity.k_center(vectors, size)
    return [pool[p] for p in picks], {"kcenter_pool": len(pool)}


def embedder(spec: str, *, backend: Any = None, cache_path: str | None = None
             ) -> Any:
    """`embed(texts) -> vectors` with the model `spec` (or `backend`), through LLMClient and
    the request cache, for --diverse kcenter."""
    from synthcodec.llm.base import EmbeddingRequest
    from synthcodec.runner import Models, RunOptions, check_models, run_async

    backends = {"embedder": backend} if backend is not None else None
    check_models({"embedder": spec}, backends)

    def embed(texts: list[str]) -> list[list[float]]:
        async def main() -> list[list[float]]:
            models = Models.open({"embedder": spec}, RunOptions(progress=False,
                                                                cache_path=cache_path),
                                 backends)
            client = models["embedder"]
            if not getattr(client.backend, "embeds", False):
                await models.aclose()
                raise UserError(f"--embed-model {spec}: {client.identity} gives no embeddings")
            slots = asyncio.Semaphore(client.max_in_flight)

            async def one(text: str) -> list[float]:
                async with slots:
                    return await client.embedding(EmbeddingRequest(text))
            try:
                return list(await asyncio.gather(*(one(t) for t in texts)))
            finally:
                await models.aclose()
        try:
            return run_async(main())  # type: ignore[no-any-return]
        except RecordFailed as exc:
            raise UserError(f"--embed-model {spec}: {exc}") from None
    return embed


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
    order: list[int]  # the kept rows' positions in the source, best first


def select_rows(source_path: str | Path, out: str | Path, rule: Rule | None = None, *,
                fmt: str = "jsonl", fields: tuple[str, ...] | list[str] = (),
                embed: Any = None, evaluate: str | Path | None = None,
                label_field: str = "label") -> Selection:
    """Keep the rows of a rate or score run (or any file with the signal's column) that
    `rule` chooses; export them to `out` in `fmt`, the others to OUT + .rejected.jsonl, with
    a summary and a histogram of the signal. `embed(texts) -> vectors` serves --diverse
    kcenter; `evaluate`: a file of labelled rows to score every signal against
    (stages/select_eval.py)."""
    rule = (rule or Rule()).checked()
    require_extra(fmt)  # a missing optional package stops us before anything is written
    src = open_source(Path(source_path), tuple(fields))
    out_path = Path(out)
    if out_path.resolve() == src.rows.resolve():
        raise UserError(f"-o {out} would overwrite the input")
    values = read_values(src, rule)
    if not values:
        raise UserError(f"{src.rows} has no rows")
    if rule.diverse == "kcenter" and embed is None:
        raise UserError("--diverse kcenter needs an embedding model")
    order = ranked(values, rule)
    size = rule.size(len(values))
    diverse_info: dict[str, Any] = {}
    if rule.diverse is not None:
        order, diverse_info = diverse_choice(src, order, rule, len(values), embed=embed)
    elif size is not None:
        order = order[:size]
    keep = review_adjust(src.run_dir, src.rows, set(order))  # RUN/review.jsonl (synthcodec view)
    order = [i for i in order if i in keep] + sorted(keep - set(order))

    n_kept = export(fmt, out_path, _rows_where(src.rows, keep, True), src.mapping, src.rows)
    rejected_path = sibling(out_path, ".rejected.jsonl")
    n_rejected = write_jsonl(rejected_path, (row for _, row in _rows_where(src.rows, keep, False)))

    text = rule.describe()
    is_score = rule.by == SCORE
    bins = score_bins(values) if is_score else value_bins(values)
    name = "scores" if is_score else "".join(c if c.isalnum() or c in "-_" else "_"
                                             for c in rule.by)
    png = (src.run_dir / f"{name}.png") if src.run_dir else sibling(out_path, f".{name}.png")
    threshold = rule.min if is_score and rule.size_rule is None else None
    plot_histogram(png, bins, threshold=threshold, xlabel=rule.by,
                   title=f"{len(values)} rows; kept {n_kept} ({text})")
    kept_values = [values[i] for i in order]
    summary: dict[str, Any] = {
        "source": str(src.run_dir or src.rows),
        "rule": {**asdict(rule), "text": text},
        "rated": len(values),
        "kept": n_kept,
        "rejected": n_rejected,
        "kept_fraction": n_kept / len(values),
        "failed_in_run": src.failed,
        "signal": {"name": rule.by, "mean": sum(values) / len(values), "min": min(values),
                   "max": max(values),
                   "kept_mean": sum(kept_values) / len(kept_values) if kept_values else None},
        **({"score_mean": sum(values) / len(values), "score_min": min(values),
            "score_max": max(values)} if is_score else {}),
        **({"flagged_ifd_ge_1": sum(1 for v in values if v >= 1.0)}
           if rule.by in IFD_SIGNALS else {}),
        **diverse_info,
        "histogram": {f"{value:g}": n for value, n in bins},
        "format": fmt,
        "outputs": {"kept": str(out_path), "rejected": str(rejected_path), "plot": str(png)},
    }
    if evaluate is not None:
        summary["evaluation"] = evaluate_signals(src, rule, evaluate, label_field=label_field,
                                                 k=n_kept)
    summary_path = sibling(out_path, ".summary.json")
    write_json(summary_path, summary)
    return Selection(n_kept, n_rejected, text, summary, bins,
                     {"kept": out_path, "rejected": rejected_path, "summary": summary_path,
                      "plot": png}, src, order)


def evaluate_signals(src: Source, rule: Rule, labels_path: str | Path, *,
                     label_field: str = "label", k: int) -> dict[str, Any]:
    """AUC and precision at k of every signal of `src` against the labels in `labels_path`."""
    path = Path(labels_path)
    labels = read_labels(path, lambda row: row_texts(row, src.mapping), label_field)
    first = next(iter(iter_rows(src.rows)), (0, {}))[1]
    signals = [s for s in (SCORE, *IFD_SIGNALS) if s in first]
    if rule.by not in signals and rule.by not in ("length", "random"):
        signals.append(rule.by)
    signals += ["length", "random"]
    matched: list[int] = []
    truth: list[bool] = []
    for i, (_, row) in enumerate(iter_rows(src.rows)):
        key = row_texts(row, src.mapping)
        if key in labels:
            matched.append(i)
            truth.append(labels[key])
    if not matched:
        raise UserError(f"{path}: none of its rows matches a row of {src.rows} (rows are matched "
                        "by instruction, input and response)")
    k = min(k, len(matched))
    results: dict[str, Any] = {}
    for signal in signals:
        values = read_values(src, Rule(by=signal))
        lowest = rule.lowest and signal == rule.by
        keys = [goodness(values[i], signal, lowest) for i in matched]
        results[signal] = {"auc": auc(keys, truth), "precision_at_k": precision_at(keys, truth, k)}
    return {"labels": str(path), "label_field": label_field, "matched": len(matched),
            "positives": sum(truth), "k": k, "signals": results}
