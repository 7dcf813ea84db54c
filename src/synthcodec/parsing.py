"""Tolerant parsers for what LLMs actually write: ratings, pairwise scores, numbered lists, rubrics.

One module although over 400 lines: every parser leans on the same small helpers (number and
label patterns, range and denominator checks, list items), and each parser is short.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from synthcodec.judging.fence import strip_code_fence

__all__ = [
    "ParseError",
    "parse_numbered_list",
    "parse_pair_scores",
    "parse_rating",
    "parse_rubrics",
]


class ParseError(ValueError):
    """Raised when model output cannot be parsed; `reason` says why in plain words."""

    def __init__(self, reason: str, text: str | None = None) -> None:
        """Store the human-readable reason and (optionally) the offending text."""
        super().__init__(reason)
        self.reason = reason
        self.text = text


# --------------------------------------------------------------------------- helpers

_NUM = r"[-+]?\d+(?:\.\d+)?"
# A number, optionally followed by a denominator ("4/5", "3.5 out of 5", "4 (out of 5)").
_SCORE_RE = re.compile(
    rf"(?<![\w.])({_NUM})(?:\s*\(?\s*(?:/|\bout\s+of\b)\s*({_NUM})\s*\)?)?(?![\w])",
    re.IGNORECASE,
)
_LABEL_RE = re.compile(r"^\s*[A-Za-z][A-Za-z '()/-]{0,40}?\s*[:=]\s*")
_SCALE_PAREN_RE = re.compile(
    rf"\(\s*(?:on\s+)?(?:an?\s+)?(?:scale\s+)?(?:of\s+|from\s+)?({_NUM})\s*(?:-|–|—|to)\s*({_NUM})\s*\)",
    re.IGNORECASE,
)
def _load_json_object(text: str) -> dict[str, Any] | None:
    """Return the JSON object the whole text encodes (code fence allowed), else None."""
    body = strip_code_fence(text.strip(), closed=True).strip()
    if not (body.startswith("{") and body.endswith("}")):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _as_number(value: Any, what: str) -> float:
    """Convert a JSON value to a finite float or raise ParseError."""
    if isinstance(value, bool) or value is None:
        raise ParseError(f"{what} is not a number: {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _SCORE_RE.fullmatch(value.strip())
        if not match:
            raise ParseError(f"{what} is not a number: {value!r}")
        number = float(match.group(1))
    else:
        raise ParseError(f"{what} is not a number: {value!r}")
    if not math.isfinite(number):
        raise ParseError(f"{what} is not a finite number: {value!r}")
    return number


def _fmt(x: float) -> str:
    """Format a float without a useless trailing .0."""
    return f"{x:g}"


def _check_range(value: float, low: float, high: float, what: str = "score") -> float:
    """Return value if low <= value <= high, else raise ParseError."""
    if not (low <= value <= high):
        raise ParseError(f"{what} {_fmt(value)} is outside the allowed range {_fmt(low)}–{_fmt(high)}")
    return value


def _check_denominator(match: re.Match[str], high: float) -> None:
    """Reject 'N/M' or 'N out of M' when M is not the top of the expected scale."""
    den = match.group(2)
    if den is not None and float(den) != high:
        raise ParseError(f"score {match.group(0).strip()!r} is on a scale of {den}, expected {_fmt(high)}")


def _clean_line(line: str, low: float, high: float) -> str:
    """Strip markdown emphasis/heading marks and '(low-high)' scale mentions from one line."""
    line = re.sub(r"[*`]|__|(?<!\w)_|_(?!\w)", "", line)
    line = re.sub(r"^\s*[#>]+\s*", "", line)

    def drop_scale(m: re.Match[str]) -> str:
        """Drop the parenthetical only when it restates the expected scale."""
        return "" if (float(m.group(1)), float(m.group(2))) == (low, high) else m.group(0)

    return _SCALE_PAREN_RE.sub(drop_scale, line).strip()


def _nonempty_lines(text: str) -> list[str]:
    """Return the lines of text that are not blank."""
    return [line for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- ratings

_RATING_SCORE_KEYS = ("score", "rating", "grade")
_EXPLANATION_KEYS = ("explanation", "reason", "reasoning", "rationale", "feedback", "justification")
_JOINERS = re.compile(r"^\s*(?:or|to|and|-|–|—|~|,|;|\|)?\s*$", re.IGNORECASE)


def parse_rating(text: str, low: float = 0, high: float = 5) -> tuple[float, str]:
    """Parse a single-score judgement: the score from the first non-empty line, and the explanation."""
    if not text or not text.strip():
        raise ParseError("empty response: expected a score on the first line")

    obj = _load_json_object(text)
    if obj is not None:
        keys = {k.lower(): k for k in obj}
        score_key = next((keys[k] for k in _RATING_SCORE_KEYS if k in keys), None)
        if score_key is None:
            raise ParseError(f"JSON response has no score field (expected one of {_RATING_SCORE_KEYS})")
        score = _check_range(_as_number(obj[score_key], "score"), low, high)
        expl_key = next((keys[k] for k in _EXPLANATION_KEYS if k in keys), None)
        explanation = obj[expl_key] if expl_key is not None else ""
        return score, str(explanation).strip()

    body = strip_code_fence(text.strip(), closed=True)
    lines = body.splitlines()
    first_idx = next(i for i, line in enumerate(lines) if line.strip())
    rest = "\n".join(lines[first_idx + 1 :]).strip()
    line = _clean_line(lines[first_idx], low, high)
    label = _LABEL_RE.match(line)
    start = label.end() if label else 0

    matches = list(_SCORE_RE.finditer(line))
    if not matches:
        raise ParseError(f"no number on the first line: {lines[first_idx].strip()!r}")

    first = matches[0]
    trailing = ""
    if first.start() == start:
        # Leading number: accept it unless another number directly follows ("4 or 5", "4-5").
        if len(matches) > 1:
            gap = line[first.end() : matches[1].start()]
            if _JOINERS.match(gap) and float(matches[1].group(1)) != float(first.group(1)):
                raise ParseError(f"ambiguous score on the first line: {lines[first_idx].strip()!r}")
        trailing = line[first.end() :].lstrip(" \t-–—:.,;)").rstrip()
    else:
        values = {float(m.group(1)) for m in matches}
        if len(values) > 1:
            raise ParseError(f"ambiguous score on the first line: {lines[first_idx].strip()!r}")

    _check_denominator(first, high)
    score = _check_range(float(first.group(1)), low, high)
    explanation = "\n".join(part for part in (trailing, rest) if part).strip()
    return score, explanation


# --------------------------------------------------------------------------- pairwise scores

_PAIR_JSON_KEYS = (
    ("score_1", "score_2"),
    ("score1", "score2"),
    ("assistant_1", "assistant_2"),
    ("assistant1", "assistant2"),
    ("assistant 1", "assistant 2"),
    ("score_a", "score_b"),
    ("assistant_a", "assistant_b"),
)
_PAIR_JOINERS = re.compile(r"^\s*(?:,|;|\||&|and|vs\.?|versus|-|–|—)?\s*$", re.IGNORECASE)
_ASSISTANT_SCORE_RE = re.compile(
    rf"assistant\s*#?\s*([12ab])\b(?:(?!assistant)[^\d\n])*?(?<![\w.])({_NUM})"
    rf"(?:\s*\(?\s*(?:/|\bout\s+of\b)\s*({_NUM})\s*\)?)?(?!\w)",
    re.IGNORECASE,
)
_LABELLED_TOP_LINES = 6
# A JSON reply cut off after its two scores (`{"score_1": 8, "score_2": 7, "explanat`): the
# comma (or brace) after the second score proves both are complete.
_JSON_PAIR_PREFIX = re.compile(
    r'^\s*(?:```(?:json)?\s*)?\{\s*"(?P<k1>[^"]{1,20})"\s*:\s*"?(?P<s1>' + _NUM + r')"?\s*,'
    r'\s*"(?P<k2>[^"]{1,20})"\s*:\s*"?(?P<s2>' + _NUM + r')"?\s*[,}]', re.IGNORECASE)


def _pair_from_json(obj: dict[str, Any], low: float, high: float) -> tuple[float, float]:
    """Extract two scores from a JSON object with score_1/score_2-style keys or a 'scores' list."""
    keys = {k.lower(): k for k in obj}
    for k1, k2 in _PAIR_JSON_KEYS:
        if k1 in keys and k2 in keys:
            s1 = _as_number(obj[keys[k1]], "score of assistant 1")
            s2 = _as_number(obj[keys[k2]], "score of assistant 2")
            return _check_range(s1, low, high), _check_range(s2, low, high)
    scores = obj.get(keys.get("scores", "scores"))
    if isinstance(scores, list) and len(scores) == 2:
        s1, s2 = (_as_number(v, "score") for v in scores)
        return _check_range(s1, low, high), _check_range(s2, low, high)
    raise ParseError("JSON response lacks two scores (expected score_1/score_2 or assistant_1/assistant_2)")


def _pair_from_labels(lines: list[str], low: float, high: float) -> tuple[float, float] | None:
    """Find 'Assistant 1: 8' / 'Assistant 2: 7' in the top lines, or None if not both present."""
    found: dict[str, re.Match[str]] = {}
    for line in lines[:_LABELLED_TOP_LINES]:
        for m in _ASSISTANT_SCORE_RE.finditer(_clean_line(line, low, high)):
            which = {"a": "1", "b": "2"}.get(m.group(1).lower(), m.group(1))
            found.setdefault(which, m)
    if "1" not in found or "2" not in found:
        return None
    result = []
    for which in ("1", "2"):
        m = found[which]
        if m.group(3) is not None and float(m.group(3)) != high:
            raise ParseError(f"score of assistant {which} is on a scale of {m.group(3)}, expected {_fmt(high)}")
        result.append(_check_range(float(m.group(2)), low, high, f"score of assistant {which}"))
    return result[0], result[1]


def _pair_from_json_prefix(text: str, low: float, high: float) -> tuple[float, float] | None:
    """The two scores at the start of a JSON reply cut off later (e.g. in its explanation)."""
    m = _JSON_PAIR_PREFIX.match(text)
    if m is None or (m["k1"].lower(), m["k2"].lower()) not in _PAIR_JSON_KEYS:
        return None
    return (_check_range(float(m["s1"]), low, high, "score of assistant 1"),
            _check_range(float(m["s2"]), low, high, "score of assistant 2"))


def parse_pair_scores(text: str, low: float = 1, high: float = 10) -> tuple[float, float]:
    """Parse a pairwise judgement into (score of assistant 1, score of assistant 2).

    Accepts the Vicuna text format (two scores on the first line, or labelled scores at the
    top) and JSON ({"score_1": 8, "score_2": 7, ...}), including a JSON reply cut off after
    its two scores.
    """
    if not text or not text.strip():
        raise ParseError("empty response: expected two scores on the first line")

    obj = _load_json_object(text)
    if obj is not None:
        return _pair_from_json(obj, low, high)
    prefix = _pair_from_json_prefix(text, low, high)
    if prefix is not None:
        return prefix
    unfenced = strip_code_fence(text.strip(), closed=True)
    if unfenced.lstrip().startswith("{"):
        raise ParseError("the JSON reply is incomplete or malformed before both scores: "
                         f"{text.strip()[:80]!r}")

    lines = _nonempty_lines(unfenced)
    first_raw = lines[0]
    first = _clean_line(first_raw, low, high)

    if "assistant" not in first.lower():
        label = _LABEL_RE.match(first)
        start = label.end() if label else 0
        matches = list(_SCORE_RE.finditer(first))
        if len(matches) == 1 and len(lines) > 1 and matches[0].span() == (0, len(first)):
            # Two bare numbers on consecutive lines: "8\n7".
            second = _clean_line(lines[1], low, high)
            m2 = _SCORE_RE.fullmatch(second)
            if m2 is not None:
                for m in (matches[0], m2):
                    _check_denominator(m, high)
                return (
                    _check_range(float(matches[0].group(1)), low, high, "score of assistant 1"),
                    _check_range(float(m2.group(1)), low, high, "score of assistant 2"),
                )
        if len(matches) == 1:
            raise ParseError(f"only one score on the first line: {first_raw.strip()!r}")
        if len(matches) >= 2:
            m1, m2 = matches[0], matches[1]
            adjacent = m1.start() == start and _PAIR_JOINERS.match(first[m1.end() : m2.start()])
            runs_on = len(matches) > 2 and _PAIR_JOINERS.match(first[m2.end() : matches[2].start()])
            if (not adjacent and len(matches) != 2) or (adjacent and runs_on):
                raise ParseError(f"cannot tell which two numbers are the scores: {first_raw.strip()!r}")
            for m in (m1, m2):
                _check_denominator(m, high)
            return (
                _check_range(float(m1.group(1)), low, high, "score of assistant 1"),
                _check_range(float(m2.group(1)), low, high, "score of assistant 2"),
            )

    labelled = _pair_from_labels(lines, low, high)
    if labelled is not None:
        return labelled
    raise ParseError(f"no pair of scores found at the top of the response: {first_raw.strip()!r}")


# --------------------------------------------------------------------------- numbered lists

_ITEM_WORDS = r"instruction|question|item|task|prompt|query|example|rubric|action|step"
_NUMBERED_RE = re.compile(
    rf"""^(?P<indent>\s*)
    (?:[#>]+\s*)?                       # markdown heading / quote marks
    (?:\*\*|__|\*|_)?                   # opening emphasis
    (?:(?:{_ITEM_WORDS})\s*\#?\s*)?     # 'Instruction 1:' style label
    \(?(?P<num>\d{{1,3}})
    (?:
        (?:[.):]|\s*[-–—](?=\s))(?!\d)   # separator: '1.', '1)', '1:', '1 -'
        (?:\*\*|__|\*|_)?               # closing emphasis ('**1.**')
      | (?:\*\*|__|\*|_)\s*(?:[.):]|[-–—](?=\s))   # '**Instruction 1**:'
    )
    \s*:?\s*
    (?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE,
)
_BULLET_RE = re.compile(r"^(?P<indent>\s*)(?:[-*•+])\s+(?P<rest>.*)$")
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»"}


def _indent_width(s: str) -> int:
    """Width of leading whitespace, tabs counting as 4."""
    return len(s.expandtabs(4))


def _clean_item(item: str) -> str:
    """Strip whitespace, surrounding quotes and wrapping or dangling markdown bold from one item."""
    prev = None
    while prev != item:
        prev = item
        item = item.strip()
        for mark in ("**", "__"):
            if item.startswith(mark) and item.endswith(mark) and len(item) >= 2 * len(mark):
                inner = item[len(mark) : -len(mark)]
                if mark not in inner:
                    item = inner
            elif item.count(mark) % 2 == 1:
                if item.endswith(mark):
                    item = item[: -len(mark)]
                elif item.startswith(mark):
                    item = item[len(mark) :]
        if len(item) >= 2 and item[0] in _QUOTES and item[-1] == _QUOTES[item[0]]:
            inner = item[1:-1]
            if item[0] not in inner and _QUOTES[item[0]] not in inner:
                item = inner
    return item


def _list_items(text: str) -> list[tuple[int | None, str]]:
    """Split text into (number, raw item text) pairs; bullets (number None) only when nothing is numbered."""
    lines = text.splitlines()
    for pattern in (_NUMBERED_RE, _BULLET_RE):
        items: list[tuple[int | None, list[str]]] = []
        base_indent: int | None = None
        pending_blank = False
        trailing_unindented: list[str] = []
        for line in lines:
            if not line.strip():
                pending_blank = bool(items)
                continue
            m = pattern.match(line)
            indent = _indent_width(line) - _indent_width(line.lstrip()) if line.strip() else 0
            is_item = m is not None and (base_indent is None or indent <= base_indent + 1)
            if is_item:
                assert m is not None
                if base_indent is None:
                    base_indent = indent
                if trailing_unindented:
                    # Paragraphs after a blank line turned out to sit between items: keep them.
                    items[-1][1].extend(trailing_unindented)
                    trailing_unindented = []
                number = int(m.group("num")) if pattern is _NUMBERED_RE else None
                items.append((number, [m.group("rest")]))
                pending_blank = False
            elif items:
                if trailing_unindented or (pending_blank and base_indent is not None and indent <= base_indent):
                    trailing_unindented.append(line.strip())
                else:
                    items[-1][1].append(line.strip())
                pending_blank = False
            # lines before the first item are preamble and are dropped
        if items:
            return [(num, "\n".join(parts)) for num, parts in items]
    return []


def _dedupe(items: list[str]) -> list[str]:
    """Clean items, drop empty ones and case/whitespace-insensitive duplicates, keeping order."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in items:
        item = _clean_item(raw)
        key = " ".join(item.casefold().split())
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def parse_numbered_list(text: str) -> list[str]:
    """Return the items of a numbered (or, failing that, bulleted) list as LLMs write them."""
    return _dedupe([item for _, item in _list_items(text)])


# --------------------------------------------------------------------------- rubrics

_HEADING_KEYWORD_RE = re.compile(r"\b(rubrics?|actions?)\b", re.IGNORECASE)


def _heading_kind(line: str) -> str | None:
    """Return 'rubrics' or 'actions' if the line is a section heading for one of them, else None."""
    if _NUMBERED_RE.match(line) or _BULLET_RE.match(line):
        return None
    stripped = line.strip()
    cleaned = re.sub(r"[*_`#]", "", stripped).strip()
    if not cleaned or len(cleaned) > 80:
        return None
    is_heading = (
        cleaned.endswith(":")
        or stripped.startswith("#")
        or (stripped.startswith(("**", "__")) and stripped.endswith(("**", "__", "**:", "__:")))
        or _HEADING_KEYWORD_RE.fullmatch(cleaned) is not None
    )
    if not is_heading:
        return None
    match = _HEADING_KEYWORD_RE.search(cleaned)
    if match is None:
        return None
    return "rubrics" if match.group(1).lower().startswith("rubric") else "actions"


def parse_rubrics(text: str) -> tuple[list[str], list[str]]:
    """Parse Self-Rubrics output into (rubrics, actions), with or without 'Rubrics:'/'Actions:' headings."""
    if not text or not text.strip():
        raise ParseError("empty response: expected rubrics and actions")
    lines = text.splitlines()
    heads = [(i, kind) for i, line in enumerate(lines) if (kind := _heading_kind(line))]
    first_of: dict[str, int] = {}
    for i, kind in heads:
        first_of.setdefault(kind, i)

    if "rubrics" in first_of and "actions" in first_of:
        r_at, a_at = first_of["rubrics"], first_of["actions"]
        if r_at < a_at:
            rubric_text, action_text = lines[r_at + 1 : a_at], lines[a_at + 1 :]
        else:
            action_text, rubric_text = lines[a_at + 1 : r_at], lines[r_at + 1 :]
        rubrics = parse_numbered_list("\n".join(rubric_text))
        actions = parse_numbered_list("\n".join(action_text))
    else:
        groups: list[list[str]] = []
        prev: int | None = None
        for number, item in _list_items(text):
            if not groups or (number is not None and prev is not None and number <= prev):
                groups.append([])
            groups[-1].append(item)
            prev = number
        if len(groups) == 1:
            raise ParseError("found one list only: expected a list of rubrics and a list of actions")
        if len(groups) > 2:
            raise ParseError(f"found {len(groups)} numbered lists: expected exactly two (rubrics, actions)")
        rubrics, actions = (_dedupe(g) for g in groups) if groups else ([], [])

    if not rubrics:
        raise ParseError("no rubrics found")
    if not actions:
        raise ParseError("no actions found")
    return rubrics, actions
