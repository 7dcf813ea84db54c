"""Outcome rules for pairwise judging in both answer orders (methods.md §3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "Result",
    "Tally",
    "alpagasus_outcome",
    "codeclm_outcome",
    "order_result",
    "position_inconsistent",
]

Result = Literal["win", "tie", "lose"]
_RESULTS: tuple[str, ...] = get_args(Result)
_VALUE: dict[str, int] = {"win": 1, "tie": 0, "lose": -1}


def _check(result: str) -> int:
    """Return +1/0/-1 for a result, raising ValueError on anything else."""
    try:
        return _VALUE[result]
    except (KeyError, TypeError):
        raise ValueError(f"result must be one of {_RESULTS}, got {result!r}") from None


def order_result(score_a: float, score_b: float) -> Result:
    """Return A's result in one order: win if A scored higher, lose if lower, else tie."""
    if score_a > score_b:
        return "win"
    if score_a < score_b:
        return "lose"
    return "tie"


def alpagasus_outcome(r1: Result, r2: Result) -> Result:
    """Combine A's two order results the AlpaGasus way (win+tie wins, win+lose ties)."""
    total = _check(r1) + _check(r2)
    if total > 0:
        return "win"
    if total < 0:
        return "lose"
    return "tie"


def codeclm_outcome(r1: Result, r2: Result) -> Result:
    """Combine A's two order results the CodecLM way (win or lose only if both orders agree)."""
    _check(r1)
    _check(r2)
    if r1 == r2 and r1 != "tie":
        return r1
    return "tie"


def position_inconsistent(r1: Result, r2: Result) -> bool:
    """Return True when the two answer orders give A different results."""
    _check(r1)
    _check(r2)
    return r1 != r2


@dataclass(frozen=True)
class Tally:
    """Counts of wins, ties and losses of one model against another."""

    win: int = 0
    tie: int = 0
    lose: int = 0

    def __post_init__(self) -> None:
        """Reject negative counts."""
        if min(self.win, self.tie, self.lose) < 0:
            raise ValueError(f"counts must be non-negative: {self}")

    @property
    def n(self) -> int:
        """Total number of compared questions."""
        return self.win + self.tie + self.lose

    def _require_n(self) -> int:
        """Return N, raising ValueError when nothing was counted."""
        if self.n == 0:
            raise ValueError("cannot compute a score from an empty tally (N = 0)")
        return self.n

    @property
    def alpagasus_score(self) -> float:
        """AlpaGasus summary (W - L) / N + 1, in [0, 2]."""
        return (self.win - self.lose) / self._require_n() + 1

    @property
    def crr(self) -> float:
        """Capacity Recovery Ratio (W + T) / N, in [0, 1]."""
        return (self.win + self.tie) / self._require_n()

    @classmethod
    def count(cls, outcomes: Iterable[Result]) -> Tally:
        """Count win/tie/lose outcomes from an iterable."""
        counts = {"win": 0, "tie": 0, "lose": 0}
        for outcome in outcomes:
            _check(outcome)
            counts[outcome] += 1
        return cls(**counts)
