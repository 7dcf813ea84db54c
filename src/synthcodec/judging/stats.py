"""Small statistics for judge cards and reports, as pure functions: Wilson intervals, Cohen's
kappa, AUC, and the two-parameter logistic fit behind the length-controlled win rate."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

__all__ = ["auc", "cohen_kappa", "logistic_fit", "sigmoid", "wilson"]

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None for n = 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items; None when chance agreement is
    already 1 (both always give one and the same label) or there are no items."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    if expected >= 1:
        return None
    return (observed - expected) / (1 - expected)


def auc(scores: Sequence[Any], positive: Sequence[bool]) -> float | None:
    """The area under the ROC curve of `scores` (numbers, or tuples compared in order, such
    as select's (not flagged, value) keys) for telling positives from negatives: the chance
    that a random positive scores above a random negative (ties count half). None without
    both kinds."""
    if len(scores) != len(positive):
        raise ValueError("one label per score")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    n_pos = sum(1 for p in positive if p)
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = sum(r for r, p in zip(ranks, positive) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def logistic_fit(x: Sequence[float], y: Sequence[float], *, iterations: int = 100,
                 tol: float = 1e-10) -> tuple[float, float] | None:
    """Maximum-likelihood (intercept, slope) of P(y = 1) = sigmoid(intercept + slope * x),
    with y in [0, 1] (a tie is 0.5), by Newton's method. None when no finite fit exists (every
    y the same, or the outcomes separated by x). All x equal: the intercept alone, slope 0."""
    if len(x) != len(y) or not x:
        raise ValueError("one outcome per x, and at least one")
    mean_y = sum(y) / len(y)
    if mean_y <= 0 or mean_y >= 1:
        return None
    if max(x) == min(x):
        return math.log(mean_y / (1 - mean_y)), 0.0
    a = math.log(mean_y / (1 - mean_y))
    b = 0.0
    for _ in range(iterations):
        g0 = g1 = h00 = h01 = h11 = 0.0
        for xi, yi in zip(x, y):
            p = sigmoid(a + b * xi)
            w = p * (1 - p)
            g0 += yi - p
            g1 += (yi - p) * xi
            h00 += w
            h01 += w * xi
            h11 += w * xi * xi
        det = h00 * h11 - h01 * h01
        if det <= 1e-300:
            return None
        da = (h11 * g0 - h01 * g1) / det
        db = (h00 * g1 - h01 * g0) / det
        a, b = a + da, b + db
        if abs(b) > 50:  # separation: the likelihood keeps growing with the slope
            return None
        if abs(da) < tol and abs(db) < tol:
            return a, b
    return None
