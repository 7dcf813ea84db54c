"""Tests for synthcodec.parsing over real-looking (and malformed) LLM outputs."""

from __future__ import annotations

import pytest

from synthcodec.parsing import (
    ParseError,
    parse_numbered_list,
    parse_pair_scores,
    parse_rating,
    parse_rubrics,
)

# --------------------------------------------------------------------------- parse_rating

RATING_OK = [
    ("4.5", 4.5, ""),
    ("5", 5.0, ""),
    ("0", 0.0, ""),
    ("  3 ", 3.0, ""),
    ("Score: 4", 4.0, ""),
    ("score:4", 4.0, ""),
    ("4/5", 4.0, ""),
    ("**4**", 4.0, ""),
    ("**Score:** 4.5", 4.5, ""),
    ("## Score: 2", 2.0, ""),
    ("Rating: 3.5 out of 5", 3.5, ""),
    ("4.5\n\nThe response is accurate and complete.", 4.5, "The response is accurate and complete."),
    ("Accuracy: 5", 5.0, ""),
    ("Accuracy score: 5\nNo factual errors.", 5.0, "No factual errors."),
    ("Score: 4.0/5.0", 4.0, ""),
    ("5 - the answer is correct", 5.0, "the answer is correct"),
    ("4.5 The response covers 2 of the 3 requested points.", 4.5, "The response covers 2 of the 3 requested points."),
    ("Score: 4 (out of 5)\nMostly right.", 4.0, "Mostly right."),
    ("Score (0-5): 3", 3.0, ""),
    ("I would rate this response a 4.", 4.0, ""),
    ("\n\n  4\nExplanation: fine.\nSecond line.", 4.0, "Explanation: fine.\nSecond line."),
    ("`4`", 4.0, ""),
    ("4.", 4.0, ""),
    ("Helpfulness: 4.5/5", 4.5, ""),
    ("4.5/5.0 - accurate", 4.5, "accurate"),
    ("Score: **4**/5", 4.0, ""),
    ("Score: 4, because it omits the edge case.", 4.0, "because it omits the edge case."),
    ("```\n4.5\nGood.\n```", 4.5, "Good."),
    ('{"score": 4.5, "explanation": "Accurate."}', 4.5, "Accurate."),
    ('{"Score": "3", "reason": "Partly wrong."}', 3.0, "Partly wrong."),
    ('{"rating": 2}', 2.0, ""),
    ('```json\n{"score": 5, "explanation": "Perfect."}\n```', 5.0, "Perfect."),
]


@pytest.mark.parametrize(("text", "score", "explanation"), RATING_OK)
def test_parse_rating_accepts(text: str, score: float, explanation: str) -> None:
    assert parse_rating(text) == (score, explanation)


RATING_BAD = [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("7", "outside"),
    ("-1", "outside"),
    ("Score: 5.5", "outside"),
    ("Score: 9/10", "scale of 10"),
    ("Score: 4/10", "scale of 10"),
    ("The response is accurate.\n4.5", "no number"),
    ("Excellent!", "no number"),
    ("Score:\n4", "no number"),
    ("4 or 5", "ambiguous"),
    ("4-5", "ambiguous"),
    ("8\n7", "outside"),
    ("Score for Assistant 1: 7", "ambiguous"),
    ("Score: 4 to 5", "ambiguous"),
    ("I'd give it 4, maybe 5.", "ambiguous"),
    ('{"explanation": "no score"}', "no score field"),
    ('{"score": null}', "not a number"),
    ('{"score": true}', "not a number"),
    ('{"score": "high"}', "not a number"),
    ('{"score": 6}', "outside"),
]


@pytest.mark.parametrize(("text", "reason"), RATING_BAD)
def test_parse_rating_rejects(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_rating(text)
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "low", "high", "score"),
    [("8", 1, 10, 8.0), ("Score: 8/10", 1, 10, 8.0), ("Score (1-10): 9", 1, 10, 9.0), ("0.5", 0, 1, 0.5)],
)
def test_parse_rating_custom_scale(text: str, low: float, high: float, score: float) -> None:
    assert parse_rating(text, low, high)[0] == score


def test_parse_rating_custom_scale_rejects() -> None:
    with pytest.raises(ParseError):
        parse_rating("0", 1, 10)


# --------------------------------------------------------------------------- parse_pair_scores

PAIR_OK = [
    ("8 7", (8.0, 7.0)),
    ("8\n7\nAssistant 1 is better.", (8.0, 7.0)),
    ("Assistant 1 receives a score of 8, while Assistant 2 receives 6.", (8.0, 6.0)),
    ("Score for Assistant 1: 7\nScore for Assistant 2: 9", (7.0, 9.0)),
    ("8 7\nAssistant 1 gave 3 examples while Assistant 2 gave 1.", (8.0, 7.0)),
    ("8, 7", (8.0, 7.0)),
    ("8,7", (8.0, 7.0)),
    ("8.5 7", (8.5, 7.0)),
    ("  9   10  ", (9.0, 10.0)),
    ("10 1", (10.0, 1.0)),
    ("Assistant 1: 8\nAssistant 2: 6", (8.0, 6.0)),
    ("Assistant 1: 8\nAssistant 2: 6\n\nAssistant 1's answer is more detailed.", (8.0, 6.0)),
    ("**Assistant 1:** 8/10\n**Assistant 2:** 5/10", (8.0, 5.0)),
    ("Assistant 1: 7, Assistant 2: 9", (7.0, 9.0)),
    ("Scores:\nAssistant 1 - 6\nAssistant 2 - 8", (6.0, 8.0)),
    ("Assistant A: 4\nAssistant B: 3", (4.0, 3.0)),
    ("Assistant 2: 6\nAssistant 1: 8", (8.0, 6.0)),
    ("**8** **7**", (8.0, 7.0)),
    ("Scores: 8 and 7", (8.0, 7.0)),
    ("8/10 7/10", (8.0, 7.0)),
    ("8 out of 10, 7 out of 10", (8.0, 7.0)),
    ("8 vs 7", (8.0, 7.0)),
    ("8 7 - the first answer is more complete; 2 issues in the second.", (8.0, 7.0)),
    ("I give 8 to the first and 7 to the second.", (8.0, 7.0)),
    ('{"score_1": 8, "score_2": 7}', (8.0, 7.0)),
    ('{"assistant_1": 8, "assistant_2": 7, "explanation": "..."}', (8.0, 7.0)),
    ('{"Assistant 1": "9", "Assistant 2": "6.5"}', (9.0, 6.5)),
    ('{"scores": [3, 4]}', (3.0, 4.0)),
    ('```json\n{"score_1": 2, "score_2": 10}\n```', (2.0, 10.0)),
]


@pytest.mark.parametrize(("text", "expected"), PAIR_OK)
def test_parse_pair_scores_accepts(text: str, expected: tuple[float, float]) -> None:
    assert parse_pair_scores(text) == expected


PAIR_BAD = [
    ("", "empty"),
    ("\n  \n", "empty"),
    ("8", "only one"),
    ("8\nThe second answer is worse.", "only one"),
    ("Score: 8\nThe other is worse.", "only one"),
    ("11 7", "outside"),
    ("8 0", "outside"),
    ("-3 7", "outside"),
    ("8/5 7/5", "scale of 5"),
    ("Both answers are good.", "no pair"),
    ("Assistant 1: 8", "no pair"),
    ("Assistant 1: N/A, Assistant 2: 7", "no pair"),
    ("Assistant 1: 12\nAssistant 2: 7", "outside"),
    ("8 7 6", "which two"),
    ('{"score_1": 8}', "lacks two scores"),
    ('{"score_1": 8, "score_2": 11}', "outside"),
    ('{"score_1": "good", "score_2": 7}', "not a number"),
]


@pytest.mark.parametrize(("text", "reason"), PAIR_BAD)
def test_parse_pair_scores_rejects(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_pair_scores(text)
    assert reason in info.value.reason


def test_parse_pair_scores_custom_scale() -> None:
    assert parse_pair_scores("4 5", low=0, high=5) == (4.0, 5.0)
    with pytest.raises(ParseError):
        parse_pair_scores("4 6", low=0, high=5)


# --------------------------------------------------------------------------- parse_numbered_list

LIST_CASES = [
    ("1. a\n2. b\n3. c", ["a", "b", "c"]),
    ("1) a\n2) b", ["a", "b"]),
    ("1 - a\n2 - b", ["a", "b"]),
    ("1: a\n2: b", ["a", "b"]),
    ("(1) a\n(2) b", ["a", "b"]),
    ("**1.** a\n**2.** b", ["a", "b"]),
    ("**1. a**\n**2. b**", ["a", "b"]),
    ("Instruction 1: a\nInstruction 2: b", ["a", "b"]),
    ("**Instruction 1:** a\n**Instruction 2**: b", ["a", "b"]),
    ("### 1. a\n### 2. b", ["a", "b"]),
    ("Here are 5 instructions:\n\n1. a\n2. b", ["a", "b"]),
    (
        "1. Write a poem about\nthe sea.\n2. Translate this:\n   'Bonjour'",
        ["Write a poem about\nthe sea.", "Translate this:\n'Bonjour'"],
    ),
    ("1. a\n\n2. b\n\n3. c", ["a", "b", "c"]),
    ("1. a\n\nsome note\n\n2. b", ["a\nsome note", "b"]),
    ("1. a\n2. b\n\nI hope these help!", ["a", "b"]),
    ("1. a\n   more of a\n2. b", ["a\nmore of a", "b"]),
    ("1. Solve for x.\n   Answer: 4\n2. b", ["Solve for x.\nAnswer: 4", "b"]),
    ('1. "Quoted"\n2. “Curly”\n3. **Bold**', ["Quoted", "Curly", "Bold"]),
    ('1. "Hello" means "hi"', ['"Hello" means "hi"']),
    ("1. **Title:** body", ["**Title:** body"]),
    ("1. a\n2. A\n3.   a  \n4. b", ["a", "b"]),
    ("1. Same  text\n2. same text", ["Same  text"]),
    ("1. a\n2.\n3. b", ["a", "b"]),
    ("1. Pour 1.5 liters of water\n2. b", ["Pour 1.5 liters of water", "b"]),
    ("1. Plan:\n   1. step one\n   2. step two\n2. b", ["Plan:\n1. step one\n2. step two", "b"]),
    ("10. ten\n11. eleven", ["ten", "eleven"]),
    ("- a\n- b\n* c\n• d", ["a", "b", "c", "d"]),
    ("Here you go:\n- a\n  continued\n- b", ["a\ncontinued", "b"]),
    ("1. numbered\n- bullet inside", ["numbered\n- bullet inside"]),
    ("", []),
    ("No list here at all.", []),
    ("In 2023 there were 5 events.", []),
]


@pytest.mark.parametrize(("text", "expected"), LIST_CASES)
def test_parse_numbered_list(text: str, expected: list[str]) -> None:
    assert parse_numbered_list(text) == expected


# --------------------------------------------------------------------------- parse_rubrics

R = ["Depth of analysis", "Use of data", "Audience", "Constraints"]
A = ["Add a SWOT analysis", "Compare with market competitors", "Target a niche", "Add a budget limit"]


def numbered(items: list[str]) -> str:
    return "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))


RUBRIC_CASES = [
    f"Rubrics:\n{numbered(R)}\n\nActions:\n{numbered(A)}",
    f"**Rubrics:**\n{numbered(R)}\n**Actions:**\n{numbered(A)}",
    f"## Rubrics\n{numbered(R)}\n\n## Actions\n{numbered(A)}",
    f"Rubrics\n{numbered(R)}\nActions\n{numbered(A)}",
    f"Here they are.\n\nRubrics to assess difficulty:\n{numbered(R)}\n\nCorresponding actions:\n{numbered(A)}\n",
    f"Actions:\n{numbered(A)}\nRubrics:\n{numbered(R)}",
    f"{numbered(R)}\n\n{numbered(A)}",
    f"{numbered(R)}\n{numbered(A)}",
    "Rubrics:\n" + "\n".join(f"- {x}" for x in R) + "\nActions:\n" + "\n".join(f"- {x}" for x in A),
]


@pytest.mark.parametrize("text", RUBRIC_CASES)
def test_parse_rubrics(text: str) -> None:
    assert parse_rubrics(text) == (R, A)


def test_parse_rubrics_heading_numbered_items_with_rubric_word() -> None:
    text = "Rubrics:\nRubric 1: x\nRubric 2: y\nActions:\nAction 1: p\nAction 2: q"
    assert parse_rubrics(text) == (["x", "y"], ["p", "q"])


RUBRIC_BAD = [
    ("", "empty"),
    (numbered(R), "one list"),
    (f"Rubrics:\n{numbered(R)}\nActions:\n", "no actions"),
    (f"Rubrics:\nnone\nActions:\n{numbered(A)}", "no rubrics"),
    (f"{numbered(R)}\n{numbered(A)}\n{numbered(A)}", "3 numbered lists"),
    ("I cannot help with that.", "no rubrics"),
]


@pytest.mark.parametrize(("text", "reason"), RUBRIC_BAD)
def test_parse_rubrics_rejects(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_rubrics(text)
    assert reason in info.value.reason


def test_pair_scores_from_json_cut_off_after_the_scores() -> None:
    from synthcodec.parsing import ParseError, parse_pair_scores

    assert parse_pair_scores('{"score_1": 8, "score_2": 7, "explanation": "Assistant 1 is') \
        == (8, 7)
    assert parse_pair_scores('```json\n{"score_1": 2, "score_2": 10}') == (2, 10)
    for bad in ('{"score_1": 8, "score_2', '{"score_1": 8, "score_2": 7', '{"x": 1, "y": 2,'):
        with pytest.raises(ParseError, match="JSON reply"):
            parse_pair_scores(bad)
    with pytest.raises(ParseError, match="outside"):
        parse_pair_scores('{"score_1": 8, "score_2": 11, "expl')
