"""The pairwise LLM judge (Vicuna style), shared by evaluation and Contrastive Filtering.

`judge_pair` asks the judge once for one order; `judge_both_orders` asks for both orders
(A first, then B first) concurrently and combines them: per-order scores, the averages
Contrastive Filtering uses for its quality gap, and the outcome rules of methods.md §3.

    both = await judge_both_orders(client, question, strong_answer, target_answer)
    gap = both.gap            # mean score of A minus mean score of B (both orders averaged)
    both.codeclm, both.alpagasus, both.inconsistent

Answers are untrusted text: they go to the judge between BEGIN/END markers carrying a
boundary token that occurs in none of them (synthcodec.judging.fence), so an answer cannot pose as
instructions, markers, or a score line.

Two answer formats, one parser (parsing.parse_pair_scores): the paper's text (the two
scores on the first line, then the explanation) and JSON ({"score_1", "score_2",
"explanation"}, sent as a JSON schema). JSON is the default for llama.cpp backends, which
turn the schema into a grammar so even the tiny embedded model must write two scores; HTTP
judges default to the paper's text format. `JudgeSettings(json=True/False)` overrides.

One module although over 400 lines: the prompt template, the answer format, the request, the
re-ask wording and the verdict are one protocol with the judge, and change together.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.judging.expected_score import SCORE_ALTERNATIVES, weighted_scores
from synthcodec.judging.fence import FENCE_NOTICE, boundary_for, fence
from synthcodec.judging.outcomes import (
    Result,
    alpagasus_outcome,
    codeclm_outcome,
    order_result,
    position_inconsistent,
)
from synthcodec.llm.base import Backend, Completion, Request, gives_token_logprobs
from synthcodec.llm.client import LLMClient
from synthcodec.parsing import parse_pair_scores
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
    "pair_request",
    "pair_schema",
    "wants_json",
    "wants_logprobs",
]

DEFAULT_JUDGE_PROMPT = "judge_pairwise.txt"
PLACEHOLDERS = ("fence_notice", "question", "answer_1", "answer_2")
SCORE_LOW, SCORE_HIGH = 1.0, 10.0
# Sent as the explanation's maxLength: a grammar-constrained backend (llama.cpp) must then
# close the string where a tiny model would otherwise ramble until max_tokens. The scores
# come first, so a reply cut off anywhere in the explanation still carries both.
EXPLANATION_MAX_CHARS = 200
# With --scores logprobs only the two scores are generated: `{"score_1": 10, "score_2": 3,` is
# 17 tokens for SmolLM2's tokenizer (one per digit), "8 6" and a newline 4.
LOGPROB_MAX_TOKENS = {True: 20, False: 8}
JSON_ANSWER = ('Reply with only a JSON object: {"score_1": the score of Assistant 1, '
               '"score_2": the score of Assistant 2, "explanation": a short explanation}. '
               "Scores are whole numbers from 1 to 10.")


EVIDENCE_JUDGE_PROMPT = "judge_pairwise_evidence.txt"
EVIDENCE_JSON_ANSWER = ('Reply with only a JSON object: {"explanation": your evaluation of both '
                        'answers, "score_1": the score of Assistant 1, "score_2": the score of '
                        "Assistant 2}, the explanation first. Scores are whole numbers from 1 "
                        "to 10.")
EVIDENCE_EXPLANATION_MAX_CHARS = 600


def pair_schema(evidence_first: bool = False) -> dict[str, Any]:
    """The JSON-mode answer: two integer scores 1-10, then a short explanation (in that order;
    `evidence_first`: the explanation first, Wang et al.'s calibration).

    `enum` is what llama.cpp's grammar honours (it ignores minimum/maximum); the bounds are
    there for servers that validate them. Built fresh each call, always equal: it is part of
    the request, hence of the cache key.
    """
    def score(which: int) -> dict[str, Any]:
        return {"type": "integer", "minimum": int(SCORE_LOW), "maximum": int(SCORE_HIGH),
                "enum": list(range(int(SCORE_LOW), int(SCORE_HIGH) + 1)),
                "description": f"score of Assistant {which}, 1 to 10"}

    if evidence_first:  # llama.cpp's grammar writes the properties in this order
        properties = {"explanation": {"type": "string",
                                      "maxLength": EVIDENCE_EXPLANATION_MAX_CHARS},
                      "score_1": score(1), "score_2": score(2)}
    else:
        properties = {"score_1": score(1), "score_2": score(2),
                      "explanation": {"type": "string", "maxLength": EXPLANATION_MAX_CHARS}}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def wants_json(choice: bool | None, backend: Backend,
               flags: tuple[str, str] = ("--judge-json", "--judge-text")) -> bool:
    """JSON answers if asked (`choice`), else by default only where the backend enforces the
    schema as a grammar (`backend.grammar_json`: llama.cpp), so even a tiny local model cannot
    answer off-format; HTTP servers differ in how (or whether) they honour response_format, so
    for them the default is the paper's own format (the score(s) on the first line). Every
    judge asks this: the pairwise judges here, the rating judge in stages/rate.py. `flags`
    are the command's (json, text) options, named in the error.
    """
    if choice is not None:
        if choice and not backend.supports_json_schema:
            raise UserError(f"{flags[0]}: the judge {backend.identity} cannot be asked for a "
                            f"JSON schema; use {flags[1]}")
        return choice
    return bool(backend.grammar_json and backend.supports_json_schema)


def wants_logprobs(scores: str, backend: Backend, flag: str = "--scores") -> bool:
    """Scores read from token log-probabilities (`scores == "logprobs"`), checked against what
    the backend can return; every judge asks this (pairwise here, the rater in stages/rate.py)."""
    if scores == "logprobs":
        if not gives_token_logprobs(backend):
            raise UserError(f"{flag} logprobs: the judge {backend.identity} returns no token "
                            f"log-probabilities; use {flag} text")
        return True
    if scores != "text":
        raise UserError(f"{flag} must be text or logprobs, not {scores!r}")
    return False


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

    def render(self, question: str, answer_1: str, answer_2: str, *,
               json_mode: bool = False, evidence_first: bool = False) -> Request:
        """The judge request for one order (answer_1 is shown first), at temperature 0.

        In JSON mode the request carries `pair_schema()` and the last message ends with
        a note asking for that JSON object instead of the score line.
        """
        boundary = boundary_for(question, answer_1, answer_2)
        values = {
            "fence_notice": FENCE_NOTICE,
            "question": fence("QUESTION", question, boundary),
            "answer_1": fence("ASSISTANT 1 ANSWER", answer_1, boundary),
            "answer_2": fence("ASSISTANT 2 ANSWER", answer_2, boundary),
        }
        # The template engine substitutes in one pass: an answer containing "$answer_2"
        # stays data, never a placeholder.
        messages = self.chat.render(values)
        if not json_mode:
            return Request(messages=messages, temperature=0.0)
        last = messages[-1]
        note = EVIDENCE_JSON_ANSWER if evidence_first else JSON_ANSWER
        messages = messages[:-1] + ({**last, "content": f"{last['content'].rstrip()}\n\n"
                                                        f"{note}"},)
        return Request(messages=messages, temperature=0.0,
                       json_schema=pair_schema(evidence_first))


def load_judge_template(path: str | Path | None = None, *,
                        evidence_first: bool = False) -> JudgeTemplate:
    """The packaged judge prompt (the papers' score-first one, or with `evidence_first` the
    explanation-first one), or the user's copy of it (see prompts/judge_pairwise*.txt)."""
    name = EVIDENCE_JUDGE_PROMPT if evidence_first else DEFAULT_JUDGE_PROMPT
    return _checked(load_template(name, path))


def parse_template(text: str, source: str = "<string>") -> JudgeTemplate:
    """A judge template from text (same syntax as every synthcodec prompt file)."""
    return _checked(ChatTemplate.parse(text, source))


def _checked(chat: ChatTemplate) -> JudgeTemplate:
    # Each of the three texts must reach the judge; the fence notice is recommended only.
    chat.check(PLACEHOLDERS, need_one_of=[("question",), ("answer_1",), ("answer_2",)])
    return JudgeTemplate(chat)


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is asked: prompt, answer format, token budget, re-asks."""

    template: JudgeTemplate | None = None  # None: the packaged prompt
    max_tokens: int = 512
    reasks: int = 2
    # True: JSON answers (schema); False: the paper's score line; None: JSON for llama.cpp
    # backends only (see wants_json), decided per judge when it is first asked.
    json: bool | None = None
    # "text": the scores as written; "logprobs": their probability-weighted means, from a
    # short generation of the scores alone (synthcodec.judging.expected_score).
    scores: str = "text"
    # The explanation first and the scores last (Wang et al. 2023, "Large Language Models
    # are not Fair Evaluators": evidence before the verdict calibrates it); else score-first.
    evidence_first: bool = False

    def resolved(self) -> JudgeTemplate:
        if self.template is not None:
            return self.template
        return _evidence_template() if self.evidence_first else _default_template()

    def for_backend(self, backend: Backend) -> JudgeSettings:
        """These settings with the answer format decided for `backend` (UserError if it
        cannot do JSON and JSON was asked for): call it before work starts."""
        wants_logprobs(self.scores, backend)
        return replace(self, json=wants_json(self.json, backend))

    def config(self) -> dict[str, Any]:
        """What changes the verdicts, for run configs."""
        config = {"judge_prompt_sha256": self.resolved().sha256,
                  "judge_max_tokens": self.max_tokens, "judge_reasks": self.reasks,
                  "judge_answer": {None: "auto", True: "json", False: "text"}[self.json]}
        if self.scores != "text":  # absent by default: runs made before the option resume
            config["judge_scores"] = self.scores
        if self.evidence_first:
            config["judge_order"] = "evidence-first"
        return config


_DEFAULT: JudgeTemplate | None = None


def _default_template() -> JudgeTemplate:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_judge_template()
    return _DEFAULT


_EVIDENCE: JudgeTemplate | None = None


def _evidence_template() -> JudgeTemplate:
    global _EVIDENCE
    if _EVIDENCE is None:
        _EVIDENCE = load_judge_template(evidence_first=True)
    return _EVIDENCE


@dataclass(frozen=True)
class Verdict:
    """One order's judgement: the scores of the answer shown first and second."""

    score_1: float
    score_2: float
    text: str  # the judge's answer (the score line and its explanation)
    attempts: int = 1  # 1 + re-asks needed to get a parsable reply
    reasoning: str = ""  # a reasoning judge's trace, apart from its answer (llm/reasoning.py)
    # "logprobs": the scores are probability-weighted means; "text": as written
    scores_from: str = "text"


async def judge_pair(client: LLMClient, question: str, answer_1: str, answer_2: str,
                     settings: JudgeSettings | None = None) -> Verdict:
    """Judge one order (answer_1 shown first); RecordFailed after the re-asks are used up."""
    settings = settings or JudgeSettings()
    json_mode = wants_json(settings.json, client.backend)
    request = pair_request(settings, question, answer_1, answer_2, json_mode=json_mode)

    evidence_first = settings.evidence_first

    def parse(completion: Completion) -> tuple[float, float, str]:
        # Score-first, truncation is fine: only the scores matter (the first line, or the
        # first two JSON fields), and a long explanation cut short must not cost the verdict.
        # Evidence-first, the scores come last: a cut reply has none (the parser says so).
        text = completion.text
        offset = 0
        if evidence_first and not json_mode:
            offset = last_line_start(text)
        s1, s2 = parse_pair_scores(text[offset:], SCORE_LOW, SCORE_HIGH)
        if request.top_logprobs is not None:
            weighted = weighted_scores(completion, ("score_1", "score_2"), SCORE_LOW,
                                       SCORE_HIGH, start=offset)
            if weighted is not None:
                return weighted[0], weighted[1], "logprobs"
        return s1, s2, "text"

    asked = await client.ask(request, parse, reasks=settings.reasks,
                             failure="judge gave no readable pair of scores",
                             correction=lambda problem: _correction(problem, json_mode,
                                                                    evidence_first))
    s1, s2, read = asked.value
    return Verdict(s1, s2, asked.completion.text, attempts=asked.attempts,
                   reasoning=asked.completion.reasoning, scores_from=read)


def pair_request(settings: JudgeSettings, question: str, answer_1: str, answer_2: str, *,
                 json_mode: bool) -> Request:
    """The request `judge_pair` sends first for one order (answer_1 shown first)."""
    request = settings.resolved().render(question, answer_1, answer_2, json_mode=json_mode,
                                         evidence_first=settings.evidence_first)
    if settings.scores == "logprobs" and settings.evidence_first:  # the scores come last
        return replace(request, top_logprobs=SCORE_ALTERNATIVES, max_tokens=settings.max_tokens)
    if settings.scores == "logprobs":
        return replace(request, top_logprobs=SCORE_ALTERNATIVES,
                       max_tokens=min(settings.max_tokens, LOGPROB_MAX_TOKENS[json_mode]))
    return replace(request, max_tokens=settings.max_tokens)


def last_line_start(text: str) -> int:
    """Where the last non-empty line of `text` starts (evidence-first replies end with the
    score line)."""
    stripped = text.rstrip()
    return stripped.rfind("\n") + 1


def _correction(problem: str, json_mode: bool, evidence_first: bool = False) -> str:
    if evidence_first:
        how = ('reply with only a JSON object {"explanation": your evaluation, "score_1": 1 to '
               '10, "score_2": 1 to 10}' if json_mode else
               "explain your evaluation first, then end with a last line holding only two "
               "scores from 1 to 10, for Assistant 1 and Assistant 2 in that order, separated "
               "by a space")
        return f"Your reply could not be read ({problem}). Reply again: {how}."
    if json_mode:
        how = ('reply with only a JSON object {"score_1": 1 to 10, "score_2": 1 to 10, '
               '"explanation": a short explanation}, scoring Assistant 1 and Assistant 2')
    else:
        how = ("the first line must hold only two scores from 1 to 10, for Assistant 1 and "
               "Assistant 2 in that order, separated by a space; then explain on the "
               "following lines")
    return f"Your reply could not be read ({problem}). Reply again: {how}."


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
            **({"judge_reasoning": {"first": self.first.reasoning,
                                    "second": self.second.reasoning}}
               if self.first.reasoning or self.second.reasoning else {}),
            **({"scores_from": [self.first.scores_from, self.second.scores_from]}
               if "logprobs" in (self.first.scores_from, self.second.scores_from) else {}),
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
