"""`synthcodec select`: keep the rows one signal ranks best, and export them.

The rule and the signal's values are stages/select_rules.py. This module takes the ranking,
applies the diversity pass (`diverse`, synthcodec.diversity: `minhash` skips rows that nearly
repeat a better-ranked kept row; `kcenter` spreads the K rows over the embeddings of the
KCENTER_POOL × K best), honours RUN/review.jsonl and writes the kept rows, the others, a
summary and a histogram. The rows are read in passes, so memory stays flat: one for the
signal (one float per row), one that writes the kept rows and the others together, and one
for --evaluate (the labelled rows and every signal); the diversity passes read the
candidates' texts once more and hold them (or their vectors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.formats import export, join_instruction, require_extra
from synthcodec.io import Row, iter_rows
from synthcodec.judging.stats import auc
from synthcodec.llm.client import RecordFailed
from synthcodec.report.histogram import plot_histogram, score_bins, value_bins
from synthcodec.rundir_reader import review_adjust
from synthcodec.stages.select_eval import goodness, precision_at, read_labels
from synthcodec.stages.select_rules import (
    IFD_SIGNALS,
    SCORE,
    Rule,
    Source,
    choose,
    open_source,
    ranked,
    read_values,
    row_texts,
    value_reader,
)
from synthcodec.store import atomic_writer, dumps, write_json

KCENTER_POOL = 4  # k-center picks K of the 4K best rows
_KNOWN_SUFFIXES = {".jsonl", ".json", ".ndjson"}


def sibling(out: Path, suffix: str) -> Path:
    """kept.jsonl -> kept.<suffix>; a folder (hf) -> folder.<suffix>."""
    stem = out.with_suffix("") if out.suffix.lower() in _KNOWN_SUFFIXES else out
    return stem.with_name(stem.name + suffix)


def _export_split(src: Source, keep: set[int], fmt: str, kept_path: Path,
                  rejected_path: Path) -> tuple[int, int]:
    """One pass over the rows: those in `keep` exported to `kept_path` in `fmt`, the others
    to `rejected_path` (JSONL) as they go by; (kept, rejected) counts."""
    rejected = 0
    with atomic_writer(rejected_path) as others:
        def kept_rows() -> Iterator[tuple[int, Row]]:
            nonlocal rejected
            for i, (line, row) in enumerate(iter_rows(src.rows)):
                if i in keep:
                    yield line, row
                else:
                    others.write(dumps(row) + "\n")
                    rejected += 1
        kept = export(fmt, kept_path, kept_rows(), src.mapping, src.rows)
    return kept, rejected


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
    from synthcodec.executors import run_async
    from synthcodec.llm.base import EmbeddingRequest
    from synthcodec.session import Models, RunOptions, check_models

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
    values: list[float]  # the signal's value of every row of the source


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
    if rule.diverse == "kcenter" and embed is None:
        raise UserError("--diverse kcenter needs an embedding model")
    values = read_values(src, rule)
    if not values:
        raise UserError(f"{src.rows} has no rows")
    diverse_info: dict[str, Any] = {}
    if rule.diverse is not None:
        order, diverse_info = diverse_choice(src, ranked(values, rule), rule, len(values),
                                             embed=embed)
    else:
        order = choose(values, rule)
    keep = review_adjust(src.run_dir, src.rows, set(order))  # RUN/review.jsonl (synthcodec view)
    order = [i for i in order if i in keep] + sorted(keep - set(order))

    rejected_path = sibling(out_path, ".rejected.jsonl")
    n_kept, n_rejected = _export_split(src, keep, fmt, out_path, rejected_path)

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
                      "plot": png}, src, order, values)


def evaluate_signals(src: Source, rule: Rule, labels_path: str | Path, *,
                     label_field: str = "label", k: int) -> dict[str, Any]:
    """AUC and precision at k of every signal of `src` against the labels in `labels_path`
    (stages/select_eval.py)."""
    path = Path(labels_path)
    labels = read_labels(path, lambda row: row_texts(row, src.mapping), label_field)
    signals: list[str] = []
    readers: list[Any] = []
    columns: list[list[float]] = []  # each signal's values at the matched rows
    truth: list[bool] = []
    for line, row in iter_rows(src.rows):  # one pass: the matches and every signal's values
        if not readers:  # the first row says which signals the source has
            signals = [s for s in (SCORE, *IFD_SIGNALS) if s in row]
            if rule.by not in signals and rule.by not in ("length", "random"):
                signals.append(rule.by)
            signals += ["length", "random"]
            readers = [value_reader(src, Rule(by=s), row) for s in signals]
            columns = [[] for _ in signals]
        key = row_texts(row, src.mapping)
        if key in labels:
            truth.append(labels[key])
            for values, read in zip(columns, readers):
                values.append(read(line, row))
    if not truth:
        raise UserError(f"{path}: none of its rows matches a row of {src.rows} (rows are matched "
                        "by instruction, input and response)")
    k = min(k, len(truth))
    results: dict[str, Any] = {}
    for signal, values in zip(signals, columns):
        lowest = rule.lowest and signal == rule.by
        keys = [goodness(v, signal, lowest) for v in values]
        results[signal] = {"auc": auc(keys, truth), "precision_at_k": precision_at(keys, truth, k)}
    return {"labels": str(path), "label_field": label_field, "matched": len(truth),
            "positives": sum(truth), "k": k, "signals": results}
