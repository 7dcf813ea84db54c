"""Judging the probes with the real commands' own judges: the pairwise judge of `compare` and
`generate` (judge.judge_both_orders, both orders) or the rater of `rate` (stages.rate.Rater),
with the same prompts, answer formats and parsers, through the run's client (its cache,
limits and budget). Each distinct request is sent once, however many probes share it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from synthcodec.cache import request_key
from synthcodec.judging.check.card import JudgeCard, ProbeStats, Spread
from synthcodec.judging.check.probes import PAIRWISE_KINDS, RATER_KINDS, Probe
from synthcodec.judging.outcomes import order_result
from synthcodec.judging.pairwise import (
    BothOrders,
    JudgeSettings,
    judge_both_orders,
    pair_request,
    wants_json,
)
from synthcodec.llm.base import Request
from synthcodec.llm.client import LLMClient, RecordFailed, clip
from synthcodec.progress import Counts, Progress
from synthcodec.store import hash_value

__all__ = ["Plan", "check_pairwise", "check_rater", "plan_pairwise", "plan_rater"]

T = TypeVar("T")
EXAMPLES_PER_KIND = 2


@dataclass(frozen=True)
class Plan:
    """The requests a check sends first (re-asks not counted) and what they may cost."""

    requests: int
    cached: int
    prompt_tokens: float  # estimated, of the requests not cached
    max_completion_tokens: int
    usd: float | None  # at most (the model's price), None when it has none
    sha256: str  # of the requests' cache keys: what the check asks, and of which model

    def line(self, judge: str) -> str:
        money = ("$0 (a local model)" if self.usd == 0 else "price unknown" if self.usd is None
                 else f"at most ${self.usd:.4f}")
        return (f"judge check: {self.requests} requests to {judge} ({self.cached} cached), "
                f"about {_k(self.prompt_tokens)} tokens in and at most "
                f"{_k(self.max_completion_tokens)} out, {money}")


def _plan(client: LLMClient, requests: Sequence[Request]) -> Plan:
    cache = client.cache
    keys = [request_key(client.identity, r) for r in requests]
    todo = [r for r, key in zip(requests, keys) if cache is None or cache.get(key) is None]
    prompt = sum(r.estimated_prompt_tokens() for r in todo)
    completion = sum(r.max_tokens for r in todo)
    meter = getattr(client, "meter", None)
    price = getattr(getattr(meter, "usage", None), "price", None)
    return Plan(len(requests), len(requests) - len(todo), prompt, completion,
                price.cost(prompt, completion) if price is not None else None,
                hash_value(keys))


def _pairs(probes: Sequence[Probe]) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys((p.question, p.first, p.second) for p in probes))


def plan_pairwise(client: LLMClient, settings: JudgeSettings, probes: Sequence[Probe]) -> Plan:
    json_mode = wants_json(settings.json, client.backend)
    requests = [pair_request(settings, q, x, y, json_mode=json_mode)
                for q, a, b in _pairs(probes) for x, y in ((a, b), (b, a))]
    return _plan(client, requests)


def plan_rater(rater: Any, probes: Sequence[Probe]) -> Plan:
    triplets = dict.fromkeys((p.instruction, p.input, text) for p in probes
                             for text in (p.first, p.second))
    return _plan(rater.client, [rater.request(*t) for t in triplets])


async def _each(keys: Sequence[Any], call: Callable[[Any], Awaitable[T]],
                progress: Progress | None) -> dict[Any, T | RecordFailed]:
    """`call(key)` for every key, all at once (the client limits what is in flight)."""
    async def one(key: Any) -> T | RecordFailed:
        try:
            return await call(key)
        except RecordFailed as exc:
            return exc
        finally:
            if progress is not None:
                progress.counts.done += 1
                progress.counts.ok += 1
                progress.tick()

    results = await asyncio.gather(*(one(k) for k in keys))
    return dict(zip(keys, results))


def _progress(client: LLMClient, total: int, enabled: bool) -> Progress:
    return Progress("judge check", Counts(total=total), client.stats, enabled=enabled)


async def check_pairwise(client: LLMClient, settings: JudgeSettings, probes: Sequence[Probe],
                         *, judge: str, data: str, per_kind: int,
                         progress: bool = False) -> JudgeCard:
    """Judge every probe pair in both orders, as `compare` does; the card."""
    settings = settings.for_backend(client.backend)
    before = client.stats.as_dict()
    keys = _pairs(probes)
    bar = _progress(client, len(keys), progress)
    try:
        judged = await _each(keys, lambda k: judge_both_orders(client, *k, settings), bar)
    finally:
        bar.close()
    stats = {kind: ProbeStats(kind, "pairs" if kind == "swap" else "judgements")
             for kind in PAIRWISE_KINDS if any(p.kind == kind for p in probes)}
    examples: list[dict[str, Any]] = []
    first_won = decided = 0
    for both in judged.values():  # position bias, over every distinct pair judged
        if isinstance(both, BothOrders):
            # `first` shown first, then shown second: the answer shown first won when
            # `first` won in the first order or lost in the second.
            for result, win_means_first_shown in ((both.result_first, True),
                                                  (both.result_second, False)):
                if result != "tie":
                    decided += 1
                    first_won += (result == "win") == win_means_first_shown
    for probe in probes:
        both = judged[(probe.question, probe.first, probe.second)]
        s = stats[probe.kind]
        if isinstance(both, RecordFailed):
            s.failed += 1
            _example(examples, probe, {"failed": clip(str(both), 200)})
            continue
        assert isinstance(both, BothOrders)
        results = (both.result_first, both.result_second)  # for `first`, in each order
        sound_before = s.passed
        if probe.kind == "swap":
            _count(s, "win" if results[0] == results[1] else "lose")
        elif probe.kind == "identical":  # either answer winning is unsound
            for result in results:
                _count(s, "tie" if result == "tie" else "lose")
        else:
            for result in results:
                _count(s, result)
        if s.passed - sound_before < (1 if probe.kind == "swap" else 2):
            _example(examples, probe, {"first_shown_first": [both.s_a_first, both.s_b_first],
                                       "first_shown_second": [both.s_a_second,
                                                              both.s_b_second]})
    return JudgeCard(judge=judge, role="pairwise", probes=stats,
                     first_shown_wins=(first_won, decided), settings=_settings(settings),
                     data=data, per_kind=per_kind, requests=_sent(client, before),
                     examples=examples)


async def check_rater(rater: Any, probes: Sequence[Probe], *, judge: str, data: str,
                      per_kind: int, progress: bool = False) -> JudgeCard:
    """Rate every probe answer once, as `rate` does, and compare each pair's scores."""
    client: LLMClient = rater.client
    before = client.stats.as_dict()
    keys = list(dict.fromkeys((p.instruction, p.input, text) for p in probes
                              for text in (p.first, p.second)))
    bar = _progress(client, len(keys), progress)
    try:
        rated = await _each(keys, lambda k: rater.rate(*k), bar)
    finally:
        bar.close()
    stats = {kind: ProbeStats(kind, "pairs") for kind in RATER_KINDS
             if any(p.kind == kind for p in probes)}
    examples: list[dict[str, Any]] = []
    real: dict[tuple[str, str, str], float] = {}
    for probe in probes:
        s = stats[probe.kind]
        first = rated[(probe.instruction, probe.input, probe.first)]
        second = rated[(probe.instruction, probe.input, probe.second)]
        if not isinstance(first, RecordFailed):
            real[(probe.instruction, probe.input, probe.first)] = first.score
        if isinstance(first, RecordFailed) or isinstance(second, RecordFailed):
            s.failed += 1
            reason = first if isinstance(first, RecordFailed) else second
            _example(examples, probe, {"failed": clip(str(reason), 200)})
            continue
        result = order_result(first.score, second.score)
        _count(s, result)
        if (result == "lose") or (result == "tie" and probe.kind != "padding"):
            _example(examples, probe, {"scores": [first.score, second.score]})
    settings = {"dimension": rater.dimension, "answer": "json" if rater.json_mode else "text",
                "scores": "logprobs" if rater.logprobs else "text",
                "max_tokens": rater.max_tokens}
    return JudgeCard(judge=judge, role="rater", probes=stats, spread=Spread(list(real.values())),
                     settings=settings, data=data, per_kind=per_kind,
                     requests=_sent(client, before), examples=examples)


def _count(stats: ProbeStats, result: str) -> None:
    if result == "win":
        stats.right += 1
    elif result == "tie":
        stats.tie += 1
    else:
        stats.wrong += 1


def _example(examples: list[dict[str, Any]], probe: Probe, scores: dict[str, Any]) -> None:
    if sum(1 for e in examples if e["kind"] == probe.kind) >= EXAMPLES_PER_KIND:
        return
    examples.append({"kind": probe.kind, "key": probe.key, "question": clip(probe.question, 160),
                     "first": clip(probe.first, 160), "second": clip(probe.second, 160),
                     **scores})


def _settings(settings: JudgeSettings) -> dict[str, Any]:
    return {"answer": {None: "auto", True: "json", False: "text"}[settings.json],
            "scores": settings.scores, "max_tokens": settings.max_tokens}


def _sent(client: LLMClient, before: dict[str, Any]) -> dict[str, int]:
    after = client.stats.as_dict()
    return {"sent": after["requests"] - before["requests"],
            "cached": after["cache_hits"] - before["cache_hits"]}


def _k(tokens: float) -> str:
    return f"{tokens / 1000:.1f}k" if tokens >= 1000 else f"{tokens:.0f}"
