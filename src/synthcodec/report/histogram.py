"""Score histograms for ratings: half-point bins, a text chart for the terminal, a PNG plot
(report.charts)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from synthcodec.report import charts

__all__ = ["bin_of", "score_bins", "value_bins", "text_histogram", "plot_histogram"]

BIN_WIDTH = 0.5


def bin_of(score: float, low: float = 0.0, high: float = 5.0, width: float = BIN_WIDTH) -> float:
    """The half-point bin a score falls in: the nearest multiple of `width`, clipped to the scale."""
    nearest = math.floor(score / width + 0.5) * width  # half-up, not banker's rounding
    return min(high, max(low, nearest))


def score_bins(scores: Iterable[float], low: float = 0.0, high: float = 5.0,
               width: float = BIN_WIDTH) -> list[tuple[float, int]]:
    """(bin, count) for every bin from low to high, empty ones included so charts line up."""
    n_bins = int(round((high - low) / width)) + 1
    counts = [0] * n_bins
    for score in scores:
        counts[int(round((bin_of(score, low, high, width) - low) / width))] += 1
    return [(low + i * width, counts[i]) for i in range(n_bins)]


def value_bins(values: Iterable[float], n_bins: int = 10) -> list[tuple[float, int]]:
    """(left edge, count) of `n_bins` equal-width bins from the smallest value to the largest,
    for signals without a fixed scale (IFD, length); edges rounded to 4 significant digits."""
    values = list(values)
    if not values:
        return []
    low, high = min(values), max(values)
    width = (high - low) / n_bins
    if width <= 0:
        return [(float(f"{low:.4g}"), len(values))]
    counts = [0] * n_bins
    for value in values:
        counts[min(n_bins - 1, int((value - low) / width))] += 1
    return [(float(f"{low + i * width:.4g}"), counts[i]) for i in range(n_bins)]


def text_histogram(bins: list[tuple[float, int]], width: int = 40) -> list[str]:
    """One line per bin: label, bar scaled to the largest bin, count and share."""
    total = sum(n for _, n in bins)
    peak = max((n for _, n in bins), default=0)
    lines = []
    for value, n in bins:
        bar = "#" * (round(width * n / peak) if peak else 0)
        if n and not bar:
            bar = "."  # a non-empty bin never looks empty
        share = f"{100 * n / total:5.1f}%" if total else "    -"
        lines.append(f"{value:>6g} | {bar:<{width}} {n:>7} {share}")
    return lines


def plot_histogram(path: str | Path, bins: list[tuple[float, int]], *, title: str,
                   threshold: float | None = None, xlabel: str = "score") -> Path:
    """Write a bar chart of the bins as PNG (atomically); marks `threshold` when given."""
    fig, (ax,) = charts.new_figure()
    xs = [value for value, _ in bins]
    ys = [n for _, n in bins]
    step = xs[1] - xs[0] if len(xs) > 1 else BIN_WIDTH
    width = step * 0.85
    colors = [charts.COLORS["keep" if threshold is not None and x >= threshold else "other"]
              for x in xs]
    ax.bar(xs, ys, width=width, color=colors)
    if threshold is not None:
        ax.axvline(threshold - step / 2, color=charts.COLORS["mark"], linestyle="--",
                   label=f"keep score ≥ {threshold:g}")
        ax.legend(loc="best")
    ax.set_xticks(xs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title)
    fig.tight_layout()
    return charts.save(fig, path)
