"""Scripted judges with known biases, for the judge check's tests: each reads the fenced
texts out of the real judge prompts (pairwise, or the rater's) and answers by its rule."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from synthcodec.llm import FakeBackend, Request


def fenced(request: Request, label: str) -> str:
    """The text between the fence markers labelled `label` in the request's last user turn."""
    user = next(m["content"] for m in request.messages if m["role"] == "user")
    m = re.search(rf"<<<BEGIN (DATA-\w+) {label}>>>\n(.*?)\n<<<END \1 {label}>>>", user, re.S)
    assert m, f"no fenced {label} in the prompt"
    return m.group(2)


def answers(request: Request) -> tuple[str, str, str]:
    """(question, answer shown first, answer shown second) of a pairwise judge prompt."""
    return (fenced(request, "QUESTION"), fenced(request, "ASSISTANT 1 ANSWER"),
            fenced(request, "ASSISTANT 2 ANSWER"))


def _hash(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big")


# ------------------------------------------------------------------ pairwise judges

def always_first() -> FakeBackend:
    """Prefers whatever is shown first."""
    return FakeBackend(lambda r: "8 3\nThe first is better.", name="first")


def prefers_longer() -> FakeBackend:
    """Prefers the longer answer (ties equal lengths): verbosity bias, nothing else."""
    def reply(request: Request) -> str:
        _, a1, a2 = answers(request)
        return "9 2" if len(a1) > len(a2) else "2 9" if len(a1) < len(a2) else "5 5"
    return FakeBackend(reply, name="longer")


def random_pair_scores(request: Request) -> tuple[int, int]:
    """The random judge's two scores for `request`: a hash of everything it shows."""
    question, a1, a2 = answers(request)
    h = _hash(question, a1, a2)
    return 1 + h % 10, 1 + (h // 10) % 10


def random_judge() -> FakeBackend:
    return FakeBackend(lambda r: "{} {}".format(*random_pair_scores(r)), name="random")


def good_judge(real: Mapping[str, str]) -> FakeBackend:
    """Follows the content: `real` maps each question to its real answer; the real answer
    scores 9, padded with more text 6, cut short 3, anything else (another question's) 2."""
    def quality(question: str, answer: str) -> int:
        truth = real[question]
        if answer == truth:
            return 9
        if answer.startswith(truth):
            return 6
        if truth.startswith(answer):
            return 3
        return 2

    def reply(request: Request) -> str:
        question, a1, a2 = answers(request)
        return f"{quality(question, a1)} {quality(question, a2)}\nBecause of the content."
    return FakeBackend(reply, name="good")


# ------------------------------------------------------------------ raters

def rated(request: Request) -> tuple[str, str]:
    """(instruction, response) of a rating prompt."""
    return fenced(request, "INSTRUCTION"), fenced(request, "RESPONSE")


def constant_rater(score: float = 0.5) -> FakeBackend:
    return FakeBackend(lambda r: f"{score:g}\nFine.", name="constant")


def longer_rater() -> FakeBackend:
    """Scores by length alone: one point per 10 words, at most 5."""
    return FakeBackend(lambda r: f"{min(5, len(rated(r)[1].split()) // 10)}\nLong enough.",
                       name="longer-rater")


def random_rater_score(request: Request) -> float:
    instruction, response = rated(request)
    return (_hash(instruction, response) % 11) / 2


def random_rater() -> FakeBackend:
    return FakeBackend(lambda r: f"{random_rater_score(r):g}\nHm.", name="random-rater")


def good_rater(real: Mapping[str, tuple[str, float]]) -> FakeBackend:
    """`real`: instruction -> (its real response, that response's score); another
    question's response scores 0.5, the first third 1, the padded response its score - 0.5."""
    def reply(request: Request) -> str:
        instruction, response = rated(request)
        truth, score = real[instruction]
        if response == truth:
            value = score
        elif response.startswith(truth):
            value = score - 0.5
        elif truth.startswith(response):
            value = 1.0
        else:
            value = 0.5
        return f"{value:g}\nAccording to the content."
    return FakeBackend(reply, name="good-rater")
