"""Scores from log-probabilities (G-Eval, Liu et al. 2023): the probability-weighted mean over
the score tokens where the judge wrote its score, instead of the one digit it sampled.

The reply is read by the usual parser first (parsing.parse_rating, parse_pair_scores, or the
JSON readers), which checks its format and gives the sampled score(s). `score_spans` finds
where each score stands in the reply's text, in the formats the prompts ask for (the score(s)
at the start of the first line, or the JSON "score" / "score_1" / "score_2" fields);
`expected_scores` maps each to the generated token that starts it and averages the whole
numbers in [low, high] among the most likely tokens there, weighted by their probabilities.

A number written in several tokens ("10" is "1" + "0" for SmolLM2): the mass of the token
that was sampled is split by the next position's digits (known only on the sampled path); an
alternative that was not sampled counts as the number it spells ("1" as 1). A half score such
as "3.5" contributes its integer digit. Where the backend gave no log-probabilities, or a score
is not where the format puts it, `expected_scores` returns None and the sampled score stands
(callers record which way each score was read).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from synthcodec.llm.base import Completion, TokenLogprob

__all__ = ["SCORE_ALTERNATIVES", "SCORES_CHOICES", "SCORES_HELP", "expected_scores", "score_spans",
           "weighted_scores"]

SCORES_CHOICES = ("text", "logprobs")
SCORES_HELP = ("Read the judge's scores as written (text), or as the probability-weighted mean "
               "of the score tokens (logprobs, G-Eval: a short generation of the scores alone; "
               "needs a backend that returns log-probabilities: the embedded model, llama.cpp "
               "server, vLLM, SGLang, OpenAI). Default text: the two are not yet measured side "
               "by side (docs/judging.md).")
# Alternatives asked per generated token (Request.top_logprobs): OpenAI's maximum.
SCORE_ALTERNATIVES = 20

_NUMBER = r"(\d+)(?:\.\d+)?"
_JSON_FIELD = r'"{key}"\s*:\s*"?' + _NUMBER
_TEXT_ONE = re.compile(r"^[\s*_#>`]*(?:score\s*[:=\-]?\s*)?" + _NUMBER, re.IGNORECASE)
_TEXT_TWO = re.compile(r"^[\s*_#>`]*" + _NUMBER + r"[\s,;/|&]+(?:and\s+|vs\.?\s+)?" + _NUMBER,
                       re.IGNORECASE)


def score_spans(text: str, keys: Sequence[str]) -> list[tuple[int, int]] | None:
    """Where the integer part of each score stands in `text`: one per JSON key in `keys`
    (("score",) for a rating, ("score_1", "score_2") for a pair) in a JSON reply, else that
    many numbers at the start of the first non-empty line. None when they are not there."""
    if text.lstrip().startswith(("{", "```")):
        spans = []
        for key in keys:
            match = re.search(_JSON_FIELD.format(key=re.escape(key)), text)
            if match is None:
                return None
            spans.append(match.span(1))
        return spans
    offset = len(text) - len(text.lstrip("\n\r"))
    first = text[offset:].split("\n", 1)[0]
    match = (_TEXT_ONE if len(keys) == 1 else _TEXT_TWO).match(first)
    if match is None:
        return None
    return [(offset + match.start(g), offset + match.end(g)) for g in range(1, len(keys) + 1)]


def weighted_scores(completion: Completion, keys: Sequence[str], low: float, high: float,
                    start: int = 0) -> list[float] | None:
    """The probability-weighted mean of each score the reply's text writes from `start` on
    (`score_spans` of text[start:], `keys` as there); None where they cannot be read, and
    the sampled scores stand (what every judge asked with --scores logprobs does)."""
    spans = score_spans(completion.text[start:], keys)
    if spans is None:
        return None
    return expected_scores(completion, [(a + start, b + start) for a, b in spans], low, high)


def expected_scores(completion: Completion, spans: Sequence[tuple[int, int]], low: float,
                    high: float) -> list[float] | None:
    """The probability-weighted mean of each score in `spans` (see the module docstring);
    None unless every one could be read from the completion's token log-probabilities."""
    tokens = completion.token_logprobs
    if not tokens:
        return None
    shift = _text_offset(tokens, completion.text)
    if shift is None:
        return None
    starts = []
    position = 0
    for token in tokens:
        starts.append(position)
        position += len(token.token)
    out = []
    for start, end in spans:
        value = _expected_at(tokens, starts, shift + start, completion.text[start:end], low, high)
        if value is None:
            return None
        out.append(value)
    return out


def _text_offset(tokens: Sequence[TokenLogprob], text: str) -> int | None:
    """Where `text` starts in the concatenated tokens. The tokens cover the raw reply, `text`
    is its answer (LLMClient splits a reasoning trace off, llm/reasoning.py): the answer ends
    the reply, so its last occurrence is the one (a trace often writes the scores too);
    whitespace the backend or the split stripped may stand around it."""
    joined = "".join(t.token for t in tokens)
    at = joined.rfind(text)
    if at >= 0:
        return at
    stripped = text.strip()
    at = joined.rfind(stripped) if stripped else -1
    return at - (len(text) - len(text.lstrip())) if at >= 0 else None


def _expected_at(tokens: Sequence[TokenLogprob], starts: list[int], position: int,
                 written: str, low: float, high: float) -> float | None:
    index = next((i for i, s in enumerate(starts)
                  if s <= position < s + len(tokens[i].token)), None)
    if index is None:
        return None
    sampled = tokens[index]
    prefix = sampled.token[: position - starts[index]]
    sampled_digits = sampled.token[len(prefix):]
    if not sampled_digits.isdigit() or not written.startswith(sampled_digits):
        return None  # the score does not start where a token starts: not ours to read
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    alternatives = dict(sampled.top)
    alternatives.setdefault(sampled.token, sampled.logprob)
    mass: dict[int, float] = {}
    for alt, logprob in alternatives.items():
        if not alt.startswith(prefix):
            continue
        digits = alt[len(prefix):]
        if not digits.isascii() or not digits.isdigit():
            continue
        p = math.exp(logprob)
        if alt == sampled.token and following is not None:
            p = _split_by_next_digit(mass, int(digits), p, following, low, high)
        _add(mass, int(digits), p, low, high)
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(v * m for v, m in mass.items()) / total


def _split_by_next_digit(mass: dict[int, float], value: int, p: float,
                         following: TokenLogprob, low: float, high: float) -> float:
    """Give `value`'s continuations (value followed by the next token's digits, e.g. 1 -> 10)
    their share of `p`; returns the share left for `value` itself."""
    alternatives = dict(following.top)
    alternatives.setdefault(following.token, following.logprob)
    continued = 0.0
    for alt, logprob in alternatives.items():
        if alt.isascii() and alt.isdigit():
            share = p * math.exp(logprob)
            continued += share
            _add(mass, int(f"{value}{alt}"), share, low, high)
    return max(0.0, p - continued)


def _add(mass: dict[int, float], value: int, p: float, low: float, high: float) -> None:
    if low <= value <= high and p > 0:
        mass[value] = mass.get(value, 0.0) + p
