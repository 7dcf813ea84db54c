"""Tests for synthcodec.judging.outcomes: per-order results, AlpaGasus/CodecLM rules, tallies."""

from __future__ import annotations

import pytest

from synthcodec.judging.outcomes import (
    Tally,
    alpagasus_outcome,
    codeclm_outcome,
    order_result,
    position_inconsistent,
)


@pytest.mark.parametrize(
    ("score_a", "score_b", "expected"),
    [
        (8, 7, "win"),
        (7, 8, "lose"),
        (7, 7, "tie"),
        (7.5, 7.0, "win"),
        (1, 10, "lose"),
        (0.0, 0.0, "tie"),
    ],
)
def test_order_result(score_a: float, score_b: float, expected: str) -> None:
    assert order_result(score_a, score_b) == expected


# (r1, r2, alpagasus, codeclm, inconsistent) over all 9 combinations.
OUTCOME_TABLE = [
    ("win", "win", "win", "win", False),
    ("win", "tie", "win", "tie", True),
    ("tie", "win", "win", "tie", True),
    ("win", "lose", "tie", "tie", True),
    ("lose", "win", "tie", "tie", True),
    ("tie", "tie", "tie", "tie", False),
    ("tie", "lose", "lose", "tie", True),
    ("lose", "tie", "lose", "tie", True),
    ("lose", "lose", "lose", "lose", False),
]


def test_table_covers_all_nine_combinations() -> None:
    assert len({(r1, r2) for r1, r2, *_ in OUTCOME_TABLE}) == 9


@pytest.mark.parametrize(("r1", "r2", "alpagasus", "codeclm", "inconsistent"), OUTCOME_TABLE)
def test_outcome_rules(r1: str, r2: str, alpagasus: str, codeclm: str, inconsistent: bool) -> None:
    assert alpagasus_outcome(r1, r2) == alpagasus  # type: ignore[arg-type]
    assert codeclm_outcome(r1, r2) == codeclm  # type: ignore[arg-type]
    assert position_inconsistent(r1, r2) is inconsistent  # type: ignore[arg-type]


@pytest.mark.parametrize("r1", ["win", "tie", "lose"])
@pytest.mark.parametrize("r2", ["win", "tie", "lose"])
def test_rules_are_symmetric_in_order(r1: str, r2: str) -> None:
    assert alpagasus_outcome(r1, r2) == alpagasus_outcome(r2, r1)  # type: ignore[arg-type]
    assert codeclm_outcome(r1, r2) == codeclm_outcome(r2, r1)  # type: ignore[arg-type]


MIRROR = {"win": "lose", "tie": "tie", "lose": "win"}


@pytest.mark.parametrize("r1", ["win", "tie", "lose"])
@pytest.mark.parametrize("r2", ["win", "tie", "lose"])
def test_rules_mirror_for_b(r1: str, r2: str) -> None:
    """B's outcome (from mirrored per-order results) is the mirror of A's."""
    for rule in (alpagasus_outcome, codeclm_outcome):
        assert rule(MIRROR[r1], MIRROR[r2]) == MIRROR[rule(r1, r2)]  # type: ignore[arg-type,operator]


@pytest.mark.parametrize("bad", ["Win", "draw", "", None, 1])
def test_invalid_results_rejected(bad: object) -> None:
    for fn in (alpagasus_outcome, codeclm_outcome, position_inconsistent):
        with pytest.raises(ValueError):
            fn(bad, "win")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            fn("win", bad)  # type: ignore[arg-type]


def test_crr_paper_example() -> None:
    tally = Tally(win=29, tie=145, lose=44)
    assert tally.n == 218
    assert tally.crr == pytest.approx(0.798165, abs=1e-6)
    assert round(tally.crr * 100, 2) == 79.82


@pytest.mark.parametrize(
    ("win", "tie", "lose", "score"),
    [
        (29, 145, 44, (29 - 44) / 218 + 1),
        (10, 0, 0, 2.0),
        (0, 0, 10, 0.0),
        (0, 10, 0, 1.0),
        (5, 0, 5, 1.0),
        (50, 20, 10, 1.5),
        (3, 1, 0, 1.75),
    ],
)
def test_alpagasus_score(win: int, tie: int, lose: int, score: float) -> None:
    assert Tally(win, tie, lose).alpagasus_score == pytest.approx(score)


@pytest.mark.parametrize(
    ("win", "tie", "lose", "crr"),
    [(1, 1, 2, 0.5), (0, 0, 3, 0.0), (2, 1, 0, 1.0), (0, 80, 0, 1.0)],
)
def test_crr(win: int, tie: int, lose: int, crr: float) -> None:
    assert Tally(win, tie, lose).crr == pytest.approx(crr)


def test_empty_tally_raises_clear_error() -> None:
    tally = Tally()
    assert tally.n == 0
    with pytest.raises(ValueError, match="N = 0"):
        _ = tally.crr
    with pytest.raises(ValueError, match="N = 0"):
        _ = tally.alpagasus_score
    with pytest.raises(ValueError):
        _ = Tally.count([]).crr


def test_negative_counts_rejected() -> None:
    with pytest.raises(ValueError):
        Tally(-1, 0, 0)


def test_count_from_outcomes() -> None:
    outcomes = ["win"] * 29 + ["tie"] * 145 + ["lose"] * 44
    assert Tally.count(iter(outcomes)) == Tally(29, 145, 44)


def test_count_rejects_unknown_outcome() -> None:
    with pytest.raises(ValueError):
        Tally.count(["win", "draw"])  # type: ignore[list-item]


def test_end_to_end_from_scores() -> None:
    """Order 2 swaps answers; the caller maps scores back to A/B before order_result."""
    judged = [  # (A, B) in order 1, (A, B) in order 2 already mapped back
        ((8, 6), (7, 7)),  # win + tie
        ((8, 6), (5, 9)),  # win + lose
        ((3, 9), (2, 8)),  # lose + lose
        ((9, 1), (9, 2)),  # win + win
    ]
    results = [(order_result(*o1), order_result(*o2)) for o1, o2 in judged]
    alpa = Tally.count(alpagasus_outcome(r1, r2) for r1, r2 in results)
    codec = Tally.count(codeclm_outcome(r1, r2) for r1, r2 in results)
    assert alpa == Tally(win=2, tie=1, lose=1)
    assert codec == Tally(win=1, tie=2, lose=1)
    assert sum(position_inconsistent(r1, r2) for r1, r2 in results) == 2
