"""Know your judge: label-free probes through the real judge, and the judge card they give.

`run_check` builds probe pairs from the user's data (judging.check.probes), judges them with
the command's own judge (judging.check.run: the pairwise judge of `compare`/`generate`, or the
rater of `rate`), optionally compares with human labels (judging.check.labels), and returns a
JudgeCard (judging.check.card) with a verdict: usable, weak or noise. `synthcodec judge-check`
runs it at full size; `rate`, `compare`, `generate` and `experiment` run a small one first
(`pre_check`) and write the card into their run directory and reports. The verdict never
changes a command's exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import Drain, UserError
from synthcodec.judging.check.card import JudgeCard
from synthcodec.judging.check.labels import pairwise_agreement, rater_agreement, read_labels
from synthcodec.judging.check.probes import (
    PAIRWISE_KINDS,
    RATER_KINDS,
    Probe,
    Sample,
    build_probes,
    samples_from_rows,
)
from synthcodec.judging.check.run import (
    Plan,
    check_pairwise,
    check_rater,
    plan_pairwise,
    plan_rater,
)
from synthcodec.judging.pairwise import JudgeSettings
from synthcodec.llm.client import LLMClient
from synthcodec.store import atomic_writer, write_json

__all__ = ["CARD_JSON", "CARD_MD", "DEFAULT_PROBES", "PRE_CHECK_PROBES", "JudgeCard", "Sample",
           "Say", "manifest_entry", "packaged_samples", "pre_check", "read_card", "run_check",
           "samples_from_rows", "silent", "write_card"]

DEFAULT_PROBES = 20  # per kind, for `synthcodec judge-check`
PRE_CHECK_PROBES = 2  # per kind, before rate / compare / generate (docs/judging.md: its cost)
CARD_JSON, CARD_MD = "judge_card.json", "judge_card.md"
PACKAGED_PROBES = "judge_probes.jsonl"

Say = Callable[[str], None]


def silent(line: str) -> None:
    """A `say` that says nothing: the default here and what `rate` and `compare` pass when
    their caller (the Python API, the experiment's tests) gave none; the commands pass a
    printer."""


@dataclass(frozen=True)
class _Prepared:
    """A check's probes and the requests they will send (nothing sent yet)."""

    probes: list[Probe]
    plan: Plan
    settings: JudgeSettings | None  # pairwise: decided for the client's backend


def _prepare(samples: Sequence[Sample], per_kind: int, client: LLMClient | None,
             settings: JudgeSettings | None, rater: Any) -> _Prepared:
    if rater is not None:
        probes = build_probes(samples, per_kind, RATER_KINDS)
        return _Prepared(probes, plan_rater(rater, probes), None)
    assert client is not None
    settings = (settings or JudgeSettings()).for_backend(client.backend)
    probes = build_probes(samples, per_kind, PAIRWISE_KINDS)
    return _Prepared(probes, plan_pairwise(client, settings, probes), settings)


async def run_check(samples: Sequence[Sample], per_kind: int, *, judge: str, data: str,
                    client: LLMClient | None = None, settings: JudgeSettings | None = None,
                    rater: Any = None, labels: str | Path | None = None,
                    progress: bool = False, say: Say = silent) -> JudgeCard:
    """The judge card of a pairwise judge (`client` + `settings`) or of a rater
    (`rater`: a stages.rate.Rater), from `per_kind` probes of each kind; it says what the
    check will send (and cost) before sending anything."""
    matched = (read_labels(labels, "rater" if rater is not None else "pairwise", samples)
               if labels is not None else None)
    prepared = _prepare(samples, per_kind, client, settings, rater)
    card = await _run(prepared, per_kind, judge=judge, data=data, client=client, rater=rater,
                      progress=progress, say=say)
    if matched is not None and rater is not None:
        card.labels = await rater_agreement(rater, matched, labels or "")
    elif matched is not None:
        assert client is not None and prepared.settings is not None
        card.labels = await pairwise_agreement(client, prepared.settings, matched, labels or "")
    return card


async def _run(prepared: _Prepared, per_kind: int, *, judge: str, data: str,
               client: LLMClient | None, rater: Any, progress: bool, say: Say) -> JudgeCard:
    say(prepared.plan.line(judge))
    if rater is not None:
        card = await check_rater(rater, prepared.probes, judge=judge, data=data,
                                 per_kind=per_kind, progress=progress)
    else:
        assert client is not None and prepared.settings is not None
        card = await check_pairwise(client, prepared.settings, prepared.probes, judge=judge,
                                    data=data, per_kind=per_kind, progress=progress)
    card.requests_sha256 = prepared.plan.sha256
    return card


async def pre_check(samples: Sequence[Sample], per_kind: int, directory: str | Path, *,
                    judge: str, data: str, client: LLMClient | None = None,
                    settings: JudgeSettings | None = None, rater: Any = None,
                    say: Say = silent) -> dict[str, Any] | None:
    """The small check a command runs before its main work: tells `say` its cost and
    its one-line verdict, writes the card into `directory` and returns it (as_dict). A card
    already there from an earlier invocation of the same check (a resumed run) is kept,
    nothing sent. Data too small to probe, or a budget reached, skips it with a line; it
    never stops the command."""
    if per_kind <= 0:
        return None
    try:
        prepared = _prepare(samples, per_kind, client, settings, rater)
        kept = read_card(directory)
        if kept is not None and kept.get("requests_sha256") == prepared.plan.sha256 \
                and kept.get("data") == data:
            say(f"{kept['line']}  (the judge check of an earlier invocation, {CARD_MD})")
            return kept
        card = await _run(prepared, per_kind, judge=judge, data=data, client=client,
                          rater=rater, progress=False, say=say)
    except UserError as exc:
        if getattr(exc, "exit_code", 2) != 2:
            raise  # e.g. an unreachable server or a bad key: the main work would fail too
        say(f"judge check skipped: {exc}")
        return None
    except Drain:
        say("judge check stopped at the budget; the run goes on")
        return None
    write_card(card, directory)
    say(card.line() + "  (--no-judge-check skips this check)")
    return card.as_dict()


def manifest_entry(card: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a run's manifest (and summary) say of its judge check (`card`: as pre_check
    returns it)."""
    if card is None:
        return None
    return {"judge_check": {"verdict": card["verdict"], "line": card["line"], "card": CARD_JSON}}


def write_card(card: JudgeCard, directory: str | Path) -> list[Path]:
    """DIR/judge_card.json and DIR/judge_card.md, each published atomically."""
    directory = Path(directory)
    write_json(directory / CARD_JSON, card.as_dict())
    with atomic_writer(directory / CARD_MD) as fh:
        fh.write(card.markdown())
    return [directory / CARD_JSON, directory / CARD_MD]


def read_card(directory: str | Path) -> dict[str, Any] | None:
    """The card a run directory holds, or None (none written, or unreadable)."""
    path = Path(directory) / CARD_JSON
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def packaged_samples() -> list[Sample]:
    """A few hand-written instructions with good answers (synthcodec/prompts/
    judge_probes.jsonl): what `generate`'s check probes when its seeds carry no responses."""
    from importlib.resources import files

    text = files("synthcodec.prompts").joinpath(PACKAGED_PROBES).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Sample(f"{PACKAGED_PROBES}:{i + 1}", r["instruction"], r.get("input", ""),
                   r["output"]) for i, r in enumerate(rows)]
