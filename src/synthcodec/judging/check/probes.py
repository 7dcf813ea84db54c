"""Probe pairs whose right answer is known without a human label, made from the user's data.

- swap: two answers in both orders (a compare pair, else a wrong-question pair): the verdict
  must hold (pairwise judges only);
- wrong_question: the real response against the response to another instruction of the same
  data: the real one must win;
- cut_short: the response against its first third: the whole must win;
- padding: the response against itself with irrelevant filler appended: the padded one must
  not win (verbosity bias);
- identical: one answer twice: a tie (pairwise judges only).

Every kind is made from the same evenly spaced rows, so a rater rates each real response once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from synthcodec.errors import UserError
from synthcodec.formats import join_instruction

__all__ = ["PAIRWISE_KINDS", "RATER_KINDS", "Probe", "Sample", "build_probes", "first_third",
           "padded", "samples_from_rows"]

PAIRWISE_KINDS = ("swap", "wrong_question", "cut_short", "padding", "identical")
RATER_KINDS = ("wrong_question", "cut_short", "padding")
MIN_WORDS = 6  # a response must have this many words for its first third to be a cut
# Irrelevant filler: fluent, on no topic, adding nothing an instruction could ask for.
FILLERS = (
    "In addition, it is worth noting that many people have different opinions on a wide "
    "range of subjects, and that these opinions can change over time as circumstances "
    "change. It is always a good idea to keep an open mind, to consider several points of "
    "view, and to remember that there is usually more than one way to look at things.",
    "Furthermore, it should be mentioned that history offers countless examples of ideas "
    "that were once widely accepted and later revised. Learning is a lifelong process, and "
    "curiosity, patience and careful thought are valuable qualities in almost every area of "
    "life, whether at work, at school or at home with family and friends.",
    "Moreover, it is important to remember that every situation is unique and that general "
    "advice may not apply in every case. Taking the time to reflect, asking questions and "
    "seeking information from reliable sources can help in many circumstances, and small "
    "steps taken consistently often lead to meaningful results over time.",
)


@dataclass(frozen=True)
class Sample:
    """One row of the user's data: an instruction (with its input) and a response to it;
    `other`: a second model's answer to the same question (compare data), if any."""

    key: str  # where it came from (line number, or the compare pair's key), for the card
    instruction: str
    input: str
    response: str
    other: str | None = None
    id: str | None = None  # the row's own id (its `id` field, a compare pair's question id)

    @property
    def question(self) -> str:
        """What a pairwise judge is shown as the question."""
        return join_instruction(self.instruction, self.input)


@dataclass(frozen=True)
class Probe:
    """Two answers to one instruction and what a sound judge does with them (see the module
    docstring): `first` must win (wrong_question, cut_short), must not lose to `second`
    (padding: `first` is the original), or `first` and `second` are A and B (swap, identical)."""

    kind: str
    key: str
    instruction: str
    input: str
    first: str
    second: str

    @property
    def question(self) -> str:
        return join_instruction(self.instruction, self.input)


def first_third(text: str) -> str:
    """The first third of `text`'s words (at least one), its spacing kept."""
    words = list(re.finditer(r"\S+", text))
    keep = max(1, len(words) // 3)
    return text[: words[keep - 1].end()] if words else text


def padded(text: str, which: int = 0) -> str:
    """`text` with one of the filler paragraphs appended."""
    return f"{text.rstrip()}\n\n{FILLERS[which % len(FILLERS)]}"


def build_probes(samples: Sequence[Sample], per_kind: int,
                 kinds: Iterable[str] = PAIRWISE_KINDS) -> list[Probe]:
    """`per_kind` probes of each kind from evenly spaced samples (UserError when the data
    has fewer than two responses long enough to cut)."""
    eligible = [s for s in samples if len(s.response.split()) >= MIN_WORDS]
    if len(eligible) < 2 or len({s.response for s in eligible}) < 2:
        raise UserError(f"the judge check needs at least two different responses of "
                        f"{MIN_WORDS} words or more (found {len(eligible)})")
    n = len(eligible)
    count = min(per_kind, n)
    chosen = [n * k // count for k in range(count)]
    kinds = tuple(kinds)
    probes: list[Probe] = []
    for k, at in enumerate(chosen):
        sample = eligible[at]
        other = _other_response(eligible, at)

        def probe(kind: str, first: str, second: str, s: Sample = sample) -> Probe:
            return Probe(kind, s.key, s.instruction, s.input, first, second)

        made = {
            "swap": probe("swap", sample.response, sample.other
                          if sample.other and sample.other != sample.response else other),
            "wrong_question": probe("wrong_question", sample.response, other),
            "cut_short": probe("cut_short", sample.response, first_third(sample.response)),
            "padding": probe("padding", sample.response, padded(sample.response, k)),
            "identical": probe("identical", sample.response, sample.response),
        }
        probes += [made[kind] for kind in kinds]
    return probes


def _other_response(eligible: Sequence[Sample], at: int) -> str:
    """A response to another instruction: half the data away, the next different one."""
    n = len(eligible)
    for step in range(n // 2 or 1, n // 2 + n):
        other = eligible[(at + step) % n]
        if other.response != eligible[at].response:
            return other.response
    raise AssertionError("build_probes checked that two responses differ")


def samples_from_rows(path: str | Path, mapping: Mapping[str, str],
                      max_rows: int | None = None) -> list[Sample]:
    """Samples from an instruction file with responses, its first `max_rows` rows if given
    (a bad row is an InputError naming its file, line and field)."""
    from synthcodec.formats import EXAMPLE_FIELDS
    from synthcodec.io import extract, iter_rows

    out: list[Sample] = []
    for line, row in iter_rows(path):
        if max_rows is not None and len(out) >= max_rows:
            break
        fields = extract(path, line, row, EXAMPLE_FIELDS, mapping)
        rid = row.get("id")
        out.append(Sample(f"line {line}", fields["instruction"], fields.get("input") or "",
                          fields["response"], id=None if rid is None else str(rid)))
    return out
