"""The pairwise LLM judge (Vicuna style), shared by evaluation and Contrastive Filtering.

`judge_pair` asks the judge once for one order; `judge_both_orders` asks for both orders
(A first, then B first) concurrently and combines them: per-order scores, the averages
Contrastive Filtering uses for its quality gap, and the outcome rules of methods.md §3.

    both = await judge_both_orders(client, question, strong_answer, target_answer)
    gap = both.gap            # mean score of A minus mean score of B (both orders averaged)
    both.codeclm, both.alpagasus, both.inconsistent

Answers are untrusted text: they go to the judge between BEGIN/END markers carrying a
boundary token that occurs in none of them (synthcodec.fence), so an answer cannot pose as
instructions, markers, or a score line.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from synthcodec.fence import FENCE_NOTICE, boundary_for, fence
from synthcodec.llm.base import Request
from synthcodec.llm.client import LLMClient, RecordFailed
from synthcodec.outcomes import (
    Result,
    alpagasus_outcome,
    codeclm_outcome,
    order_result,
    position_inconsistent,
)
from synthcodec.parsing import ParseError, parse_pair_scores
from synthcodec.prompts import ChatTemplate, load_template

__all__ = [
    "DEFAULT_JUDGE_PROMPT",
    "BothOrders",
    "JudgeSettings",
    "JudgeTemplate",
    "Verdict",
    "judge_both_orders",
    "judge_pair",
    "load_judge_template",
]

DEFAULT_JUDGE_PROMPT = "judge_pairwise.txt"
PLACEHOLDERS = ("fence_notice", "question", "answer_1", "answer_2")
SCORE_LOW, SCORE_HIGH = 1.0, 10.0


@dataclass(frozen=True)
class JudgeTemplate:
    """The judge prompt: a `synthcodec.prompts` template using the four placeholders."""

    chat: ChatTemplate

    @property
    def source(self) -> str:
        return self.chat.source

    @property
    def sha256(self) -> str:
        """Goes into run configs: editing the prompt is a different run."""
        return hashlib.sha256(self.chat.text.encode()).hexdigest()

    def render(self, question: str, answer_1: str, answer_2: str) -> Request:
        """The judge request for one order (answer_1 is shown first), at temperature 0."""
        boundary = boundary_for(question, answer_1, answer_2)
        values = {
            "fence_notice": FENCE_NOTICE,
            "question": fence("QUESTION", question, boundary),
            "answer_1": fence("ASSISTANT 1 ANSWER", answer_1, boundary),
            "answer_2": fence("ASSISTANT 2 ANSWER", answer_2, boundary),
        }
        # The template engine substitutes in one pass: an answer containing "$answer_2"
        # stays data, never a placeholder.
        return Request(messages=self.chat.render(values), temperature=0.0)


def load_judge_template(path: str | Path | None = None) -> JudgeTemplate:
    """The packaged judge prompt, or the user's copy of it (see prompts/judge_pairwise.txt)."""
    return _checked(load_template(DEFAULT_JUDGE_PROMPT, path))


def parse_template(text: str, source: str = "<string>") -> JudgeTemplate:
    """A judge template from text (same syntax as every synthcodec prompt file)."""
    return _checked(ChatTemplate.parse(text, source))


def _checked(chat: ChatTemplate) -> JudgeTemplate:
    # Each of the three texts must reach the judge; the fence notice is recommended only.
    chat.check(PLACEHOLDERS, need_one_of=[("question",), ("answer_1",), ("answer_2",)])
    return JudgeTemplate(chat)


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is asked: prompt, token budget, re-asks on an unparsable reply."""

    template: JudgeTemplate | None = None  # None: the packaged prompt
    max_tokens: int = 512
    reasks: int = 2

    def resolved(self) -> JudgeTemplate:
        return self.template or _default_template()

    def config(self) -> dict[str, Any]:
        """What changes the verdicts, for run configs."""
        return {"judge_prompt_sha256": self.resolved().sha256, "judge_max_tokens": self.max_tokens,
                "judge_reasks": self.reasks}


_DEFAULT: JudgeTemplate | None = None


def _default_template() -> JudgeTemplate:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_judge_template()
    return _DEFAULT


@dataclass(frozen=True)
class Verdict:
    """One order's judgement: the scores of the answer shown first and second."""

    score_1: float
    score_2: float
    text: str  # the judge's full reply (the score line and its explanation)
    attempts: int = 1  # 1 + re-asks needed to get a parsable reply

    def as_dict(self) -> dict[str, Any]:
        return {"score_1": self.score_1, "score_2": self.score_2, "text": self.text,
                "attempts": self.attempts}


async def judge_pair(client: LLMClient, question: str, answer_1: str, answer_2: str,
                     settings: JudgeSettings | None = None) -> Verdict:
    """Judge one order (answer_1 shown first); RecordFailed after the re-asks are used up."""
    settings = settings or JudgeSettings()
    request = replace(settings.resolved().render(question, answer_1, answer_2),
                      max_tokens=settings.max_tokens)
    problem = ""
    for attempt in range(1, settings.reasks + 2):
        # Truncation is fine: only the first line (the scores) matters, and a long
        # explanation cut short must not cost the verdict.
        completion = await client.complete(request, allow_truncated=True)
        try:
            s1, s2 = parse_pair_scores(completion.text, SCORE_LOW, SCORE_HIGH)
        except ParseError as exc:
            problem = exc.reason
        else:
            return Verdict(s1, s2, completion.text, attempts=attempt)
        # At temperature 0 the same request gives the same reply (and the cache returns it),
        # so a re-ask must change the conversation: show the reply and say what was wrong.
        request = replace(request, messages=request.messages + (
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": (
                f"Your reply could not be read ({problem}). Reply again: the first line must "
                "hold only two scores from 1 to 10, for Assistant 1 and Assistant 2 in that "
                "order, separated by a space; then explain on the following lines."
            )},
        ))
    raise RecordFailed(f"judge gave no readable pair of scores after {settings.reasks + 1} "
                       f"tries: {problem}")


@dataclass(frozen=True)
class BothOrders:
    """A judged in both orders against B.

    `first`: A shown as Assistant 1, B as Assistant 2. `second`: B shown first, A second.
    Results and outcomes are A's (win = A better).
    """

    first: Verdict
    second: Verdict

    @property
    def s_a_first(self) -> float:
        return self.first.score_1

    @property
    def s_b_first(self) -> float:
        return self.first.score_2

    @property
    def s_a_second(self) -> float:
        return self.second.score_2

    @property
    def s_b_second(self) -> float:
        return self.second.score_1

    @property
    def mean_a(self) -> float:
        """A's score averaged over both orders (position-bias control)."""
        return (self.s_a_first + self.s_a_second) / 2

    @property
    def mean_b(self) -> float:
        return (self.s_b_first + self.s_b_second) / 2

    @property
    def gap(self) -> float:
        """mean_a - mean_b: Contrastive Filtering's quality gap G when A is the strong answer."""
        return self.mean_a - self.mean_b

    @property
    def result_first(self) -> Result:
        return order_result(self.s_a_first, self.s_b_first)

    @property
    def result_second(self) -> Result:
        return order_result(self.s_a_second, self.s_b_second)

    @property
    def alpagasus(self) -> Result:
        return alpagasus_outcome(self.result_first, self.result_second)

    @property
    def codeclm(self) -> Result:
        return codeclm_outcome(self.result_first, self.result_second)

    @property
    def inconsistent(self) -> bool:
        """The two orders disagree about A (position inconsistency)."""
        return position_inconsistent(self.result_first, self.result_second)

    def as_dict(self) -> dict[str, Any]:
        """Flat fields for a verdicts file; enough to recompute every outcome later."""
        return {
            "score_a_first": self.s_a_first, "score_b_first": self.s_b_first,
            "score_a_second": self.s_a_second, "score_b_second": self.s_b_second,
            "mean_a": self.mean_a, "mean_b": self.mean_b,
            "result_first": self.result_first, "result_second": self.result_second,
            "alpagasus": self.alpagasus, "codeclm": self.codeclm,
            "inconsistent": self.inconsistent,
            "judge_first": self.first.text, "judge_second": self.second.text,
            "attempts": self.first.attempts + self.second.attempts,
        }


async def judge_both_orders(client: LLMClient, question: str, a: str, b: str,
                            settings: JudgeSettings | None = None) -> BothOrders:
    """Judge A against B with A shown first and with B shown first, concurrently."""
    # Both orders always run to the end, even when one fails: a cancelled request to the
    # embedded model keeps its worker thread busy anyway, and a finished one lands in the
    # cache, so retrying the record later costs only the order that failed.
    results = await asyncio.gather(judge_pair(client, question, a, b, settings),
                                   judge_pair(client, question, b, a, settings),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    first, second = results
    assert isinstance(first, Verdict) and isinstance(second, Verdict)
    return BothOrders(first, second)
