"""Wilson intervals, Cohen's kappa, AUC, the logistic fit and the length-controlled win rate,
each against a number worked out by hand."""

from __future__ import annotations

import math

import pytest

from synthcodec.judging.stats import auc, cohen_kappa, logistic_fit, wilson
from synthcodec.report.compare import length_controlled, summarize


def test_wilson_by_hand() -> None:
    # 8 of 10, z = 1.96: centre (0.8 + 0.192) / 1.384, half 1.96 * sqrt(0.016 + 0.0096) / 1.384
    lo, hi = wilson(8, 10)  # type: ignore[misc]
    z = 1.959963984540054
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    assert (lo, hi) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) is None and wilson(0, 5)[0] == 0.0  # type: ignore[index]


def test_kappa_and_auc_by_hand() -> None:
    # po = 3/4; pe = 0.5 * 0.75 + 0.5 * 0.25 = 0.5 -> kappa = (0.75 - 0.5) / 0.5 = 0.5
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "a", "b", "a"]) == pytest.approx(0.5)
    assert cohen_kappa(["a"], ["a"]) is None
    # positives 3, 2; negatives 1, 2: pairs (3>1, 3>2, 2>1, 2=2) -> 3.5 / 4
    assert auc([3, 2, 1, 2], [True, True, False, False]) == pytest.approx(0.875)
    assert auc([1, 2], [True, True]) is None


def test_logistic_fit_saturated_design() -> None:
    # two x values: the fit reproduces each group's mean exactly
    x = [1.0] * 4 + [-1.0] * 4
    y = [1, 1, 1, 0] + [1, 0, 0.5, 0.5]
    a, b = logistic_fit(x, y)  # type: ignore[misc]
    assert a == pytest.approx(math.log(3) / 2) and b == pytest.approx(math.log(3) / 2)
    assert logistic_fit([1, 2], [1, 1]) is None  # every outcome the same
    assert logistic_fit([-1, 1], [0, 1]) is None  # separated by x
    assert logistic_fit([2, 2], [1, 0])[1] == 0.0  # type: ignore[index]


def test_length_controlled_win_rate_by_hand() -> None:
    """Four pairs where A is 100 characters longer (A wins 3, loses 1) and four where it is
    100 shorter (A wins 1, ties 2, loses 1). Raw win rate (W + T/2) / N = 5/8. The length
    differences are +-100 with standard deviation 100, so x = +-tanh(1); the saturated fit
    gives sigmoid(a + b t) = 3/4 and sigmoid(a - b t) = 1/2, so a = ln(3) / 2 and the win
    rate at equal length is sigmoid(ln 3 / 2) = sqrt(3) / (1 + sqrt(3)) = 0.634."""
    pairs = [(300, 200, 1), (300, 200, 1), (300, 200, 1), (300, 200, 0),
             (200, 300, 1), (200, 300, 0.5), (200, 300, 0.5), (200, 300, 0)]
    got = length_controlled(pairs)
    assert got is not None
    assert got["win_rate"] == 5 / 8
    assert got["lc_win_rate"] == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)))
    assert got["length_slope"] == pytest.approx(math.log(3) / 2 / math.tanh(1))
    assert (got["mean_length_a"], got["mean_length_b"]) == (250, 250)
    assert length_controlled([(1, 2, 1), (3, 1, 1)])["lc_win_rate"] is None  # type: ignore[index]


def test_compare_report_carries_it() -> None:
    def verdict(a: str, b: str, outcome: str) -> dict[str, object]:
        s = {"win": (8, 2), "tie": (5, 5), "lose": (2, 8)}[outcome]
        return {"bench": "b", "answer_a": a, "answer_b": b, "score_a_first": s[0],
                "score_b_first": s[1], "score_a_second": s[0], "score_b_second": s[1]}

    long, short = "x" * 300, "x" * 200
    rows = [verdict(long, short, o) for o in ("win", "win", "win", "lose")]
    rows += [verdict(short, long, o) for o in ("win", "tie", "tie", "lose")]
    length = summarize(rows).total.as_dict()["length"]
    assert length["lc_win_rate"] == pytest.approx(0.6340, abs=1e-4)
    assert length["win_rate"] == 0.625
