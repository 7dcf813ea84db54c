"""Agreement with human labels (`judge-check --labels FILE`): agreement, Cohen's kappa, AUC.

A pairwise judge's labels are rows {"id": ..., "preference": "a" | "b" | "tie"} (`id` as the
pair's question id; or the question as `instruction` + `input` instead); the judge's outcome
is the AlpaGasus rule over both orders and its AUC score the gap mean A - mean B. A rater's
labels are rows {"id" or "instruction" + "input", "keep": true | false}; the judge keeps a row
scoring at least `keep_at` (AlpaGasus: 4.5) and its AUC score is the score itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthcodec.errors import InputError, UserError
from synthcodec.io import iter_rows
from synthcodec.judging.check.probes import Sample
from synthcodec.judging.pairwise import JudgeSettings, judge_both_orders
from synthcodec.judging.stats import auc, cohen_kappa
from synthcodec.llm.client import LLMClient, RecordFailed

__all__ = ["KEEP_AT", "Label", "pairwise_agreement", "rater_agreement", "read_labels"]

KEEP_AT = 4.5
PREFERENCES = {"a": "a", "b": "b", "tie": "tie", "1": "a", "2": "b"}
Label = tuple[Sample, Any]  # a sample and its human label ("a"/"b"/"tie", or keep: bool)


def read_labels(path: str | Path, role: str, samples: Sequence[Sample]) -> list[Label]:
    """The labelled samples; InputError naming the line and field of a bad label, UserError
    when a label matches no sample of the data."""
    by_id = {s.id: s for s in samples if s.id is not None}
    by_text = {(s.instruction.strip(), s.input.strip()): s for s in samples}
    by_question = {s.question.strip(): s for s in samples}
    out: list[Label] = []
    for line, row in iter_rows(path):
        if role == "pairwise":
            raw = row.get("preference")
            value = PREFERENCES.get(str(raw).strip().lower()) if raw is not None else None
            if value is None:
                raise InputError(path, 'expected "a", "b" or "tie"', line=line,
                                 field="preference")
        else:
            value = row.get("keep")
            if not isinstance(value, bool):
                raise InputError(path, "expected true or false", line=line, field="keep")
        sample = None
        if row.get("id") is not None:
            sample = by_id.get(str(row["id"]))
        elif isinstance(row.get("instruction"), str):
            inp = row.get("input") if isinstance(row.get("input"), str) else ""
            sample = by_text.get((row["instruction"].strip(), inp.strip())) or \
                by_question.get(row["instruction"].strip())
        else:
            raise InputError(path, "a label names its row by id, or by instruction (+ input)",
                             line=line, field="id")
        if sample is None:
            raise UserError(f"{path}, line {line}: the label matches no row of the data")
        out.append((sample, value))
    if not out:
        raise InputError(path, "the labels file has no rows")
    return out


def _summary(path: str | Path, judged: list[tuple[Any, Any, float]], how: str,
             failed: int) -> dict[str, Any]:
    humans = [h for h, _, _ in judged]
    judges = [j for _, j, _ in judged]
    scored = [(s, h) for h, _, s in judged if h != "tie"]
    positive = [h in ("a", True) for _, h in scored]
    return {"file": str(path), "n": len(judged), "failed": failed,
            "agreement": (sum(h == j for h, j in zip(humans, judges)) / len(judged)
                          if judged else None),
            "kappa": cohen_kappa(humans, judges) if judged else None,
            "auc": auc([s for s, _ in scored], positive) if scored else None, "how": how}


async def pairwise_agreement(client: LLMClient, settings: JudgeSettings, labels: list[Label],
                             path: str | Path) -> dict[str, Any]:
    """Judge each labelled pair in both orders and compare with the human preference."""
    settings = settings.for_backend(client.backend)

    async def one(sample: Sample) -> Any:
        try:
            return await judge_both_orders(client, sample.question, sample.response,
                                           sample.other or "", settings)
        except RecordFailed as exc:
            return exc

    results = await asyncio.gather(*(one(s) for s, _ in labels))
    judged = []
    for (_, human), both in zip(labels, results):
        if not isinstance(both, RecordFailed):
            outcome = {"win": "a", "lose": "b", "tie": "tie"}[both.alpagasus]
            judged.append((human, outcome, both.gap))
    return _summary(path, judged, "AlpaGasus outcome over both orders; AUC of mean A − mean B "
                    "for human a over b, ties left out", len(labels) - len(judged))


async def rater_agreement(rater: Any, labels: list[Label], path: str | Path,
                          keep_at: float = KEEP_AT) -> dict[str, Any]:
    """Rate each labelled row and compare keep (score >= keep_at) with the human's."""
    async def one(sample: Sample) -> Any:
        try:
            return await rater.rate(sample.instruction, sample.input, sample.response)
        except RecordFailed as exc:
            return exc

    results = await asyncio.gather(*(one(s) for s, _ in labels))
    judged = [(human, r.score >= keep_at, r.score)
              for (_, human), r in zip(labels, results) if not isinstance(r, RecordFailed)]
    return _summary(path, judged, f"kept when the score is at least {keep_at:g}; AUC of the "
                    "score for keep", len(labels) - len(judged))
