"""Evaluation reports from saved verdicts: tallies per benchmark and category, Markdown, chart
(`write_report`: compare's RUN/report.{json,md} and chart.png).

Everything here is recomputed from the verdict rows (`compare`'s RUN/output.jsonl), so a
user can rebuild a report, or merge runs, without calling a judge again:

    rows = [json.loads(line) for line in open("runs/c/output.jsonl")]
    report = summarize(rows)
    report.total.codeclm.crr
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.judging.check import CARD_MD, read_card
from synthcodec.judging.outcomes import (
    Result,
    Tally,
    alpagasus_outcome,
    codeclm_outcome,
    order_result,
    position_inconsistent,
)
from synthcodec.judging.stats import logistic_fit, sigmoid
from synthcodec.store import atomic_writer, write_json

__all__ = ["Report", "ReportRow", "length_controlled", "outcomes_of", "render_markdown",
           "render_table", "summarize", "write_chart", "write_report"]

RULES_TEXT = (
    "Every question is judged twice, with the two answers swapped. Per order, A wins when "
    "the judge scores it higher. **AlpaGasus rule**: A wins a question if it wins in both "
    "orders or wins one and ties the other; a win and a loss, or two ties, is a tie; losses "
    "mirror wins. Score = (W − L) / N + 1 (0–2; 1 = even). **CodecLM rule**: A wins or loses "
    "only if both orders agree; anything else is a tie. Capacity Recovery Ratio "
    "CRR = (W + T) / N. Position inconsistency = share of questions whose two orders "
    "disagree. **Win rate** = (W + T/2) / N under the AlpaGasus rule; **LC** (length-"
    "controlled, AlpacaEval-LC's idea): a logistic fit of A's outcome on tanh(length "
    "difference / its standard deviation), read at equal length; lengths in characters."
)
OUTCOME_VALUE = {"win": 1.0, "tie": 0.5, "lose": 0.0}


def length_controlled(pairs: Iterable[tuple[float, float, float]]) -> dict[str, Any] | None:
    """Win rate at equal length from (length of A, length of B, A's outcome 1 / 0.5 / 0)
    per pair: P(A wins) = sigmoid(a + b * tanh((len A - len B) / sd)) fitted by maximum
    likelihood, and sigmoid(a), its value where the lengths are equal. None without pairs;
    `lc_win_rate` None when no finite fit exists (every pair the same outcome, or the
    outcomes separated by length)."""
    pairs = list(pairs)
    if not pairs:
        return None
    diffs = [a - b for a, b, _ in pairs]
    sd = statistics.pstdev(diffs)
    x = [math.tanh(d / sd) if sd > 0 else 0.0 for d in diffs]
    y = [o for _, _, o in pairs]
    fit = logistic_fit(x, y)
    return {"n": len(pairs), "win_rate": sum(y) / len(y),
            "lc_win_rate": sigmoid(fit[0]) if fit else None,
            "length_slope": fit[1] if fit else None,
            "mean_length_a": statistics.fmean(a for a, _, _ in pairs),
            "mean_length_b": statistics.fmean(b for _, b, _ in pairs)}


def outcomes_of(row: Mapping[str, Any]) -> tuple[Result, Result, Result, Result, bool]:
    """(result first order, result second order, AlpaGasus, CodecLM, inconsistent) for A.

    Recomputed from the four saved scores: the rules live in synthcodec.judging.outcomes only.
    """
    r1 = order_result(row["score_a_first"], row["score_b_first"])
    r2 = order_result(row["score_a_second"], row["score_b_second"])
    return r1, r2, alpagasus_outcome(r1, r2), codeclm_outcome(r1, r2), position_inconsistent(r1, r2)


@dataclass
class ReportRow:
    """The tallies of one benchmark, one category of a benchmark, or the total."""

    bench: str
    category: str | None = None
    alpagasus: Tally = field(default_factory=Tally)
    codeclm: Tally = field(default_factory=Tally)
    inconsistent: int = 0
    failed: int = 0  # pairs the judge could not score: not in N, listed so none go unnoticed
    sum_a: float = 0.0
    sum_b: float = 0.0
    # (len A, len B, A's outcome) of each pair whose answers the verdict row carries
    lengths: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.alpagasus.n

    @property
    def label(self) -> str:
        return self.bench if self.category is None else f"{self.bench} / {self.category}"

    @property
    def inconsistency_rate(self) -> float:
        return self.inconsistent / self.n if self.n else 0.0

    def add(self, row: Mapping[str, Any]) -> None:
        _, _, alpagasus, codeclm, inconsistent = outcomes_of(row)
        self.alpagasus = _plus(self.alpagasus, alpagasus)
        self.codeclm = _plus(self.codeclm, codeclm)
        self.inconsistent += inconsistent
        self.sum_a += (row["score_a_first"] + row["score_a_second"]) / 2
        self.sum_b += (row["score_b_first"] + row["score_b_second"]) / 2
        if isinstance(row.get("answer_a"), str) and isinstance(row.get("answer_b"), str):
            self.lengths.append((len(row["answer_a"]), len(row["answer_b"]),
                                 OUTCOME_VALUE[alpagasus]))

    @property
    def length(self) -> dict[str, Any] | None:
        return length_controlled(self.lengths) if len(self.lengths) == self.n else None

    def as_dict(self) -> dict[str, Any]:
        n = self.n
        return {
            "bench": self.bench, "category": self.category, "n": n, "failed": self.failed,
            "alpagasus": {"win": self.alpagasus.win, "tie": self.alpagasus.tie,
                          "lose": self.alpagasus.lose,
                          "score": self.alpagasus.alpagasus_score if n else None},
            "codeclm": {"win": self.codeclm.win, "tie": self.codeclm.tie,
                        "lose": self.codeclm.lose, "crr": self.codeclm.crr if n else None},
            "position_inconsistency": self.inconsistency_rate if n else None,
            "mean_score_a": self.sum_a / n if n else None,
            "mean_score_b": self.sum_b / n if n else None,
            "length": self.length,
        }


def _plus(tally: Tally, outcome: Result) -> Tally:
    return Tally(win=tally.win + (outcome == "win"), tie=tally.tie + (outcome == "tie"),
                 lose=tally.lose + (outcome == "lose"))


@dataclass
class Report:
    benchmarks: list[ReportRow]
    total: ReportRow
    categories: list[ReportRow]

    @property
    def table_rows(self) -> list[ReportRow]:
        """One row per benchmark, plus the total when there is more than one."""
        return self.benchmarks + ([self.total] if len(self.benchmarks) > 1 else [])

    def as_dict(self) -> dict[str, Any]:
        return {"benchmarks": [r.as_dict() for r in self.benchmarks],
                "total": self.total.as_dict(),
                "categories": [r.as_dict() for r in self.categories]}


def summarize(rows: Iterable[Mapping[str, Any]], bench_order: Iterable[str] = (),
              failed: Iterable[Mapping[str, Any]] = ()) -> Report:
    """Tally verdict rows ({bench, category, score_a_first, ...}) per benchmark and category.

    `failed` rows (pairs without a verdict) are only counted, per benchmark and in total.
    """
    benches: dict[str, ReportRow] = {name: ReportRow(name) for name in bench_order}
    cats: dict[tuple[str, str], ReportRow] = {}
    total = ReportRow("total")
    for row in rows:
        bench = str(row.get("bench") or "bench")
        benches.setdefault(bench, ReportRow(bench)).add(row)
        total.add(row)
        if row.get("category") is not None:
            key = (bench, str(row["category"]))
            cats.setdefault(key, ReportRow(bench, key[1])).add(row)
    for row in failed:
        bench = str(row.get("bench") or "bench")
        benches.setdefault(bench, ReportRow(bench)).failed += 1
        total.failed += 1
    ordered_cats = sorted(cats.values(), key=lambda r: (list(benches).index(r.bench),
                                                         r.category or ""))
    return Report(list(benches.values()), total, ordered_cats)


# ---------------------------------------------------------------------------- rendering

HEADER = ("benchmark", "N", "failed", "AlpaGasus W/T/L", "AlpaGasus score", "CodecLM W/T/L", "CRR",
          "inconsistent", "mean A", "mean B", "win rate (LC)", "length A/B")


def _cells(row: ReportRow) -> tuple[str, ...]:
    if row.n == 0:
        return (row.label, "0", str(row.failed)) + ("–",) * (len(HEADER) - 3)
    a, c = row.alpagasus, row.codeclm
    return (row.label, str(row.n), str(row.failed), f"{a.win}/{a.tie}/{a.lose}",
            f"{a.alpagasus_score:.3f}",
            f"{c.win}/{c.tie}/{c.lose}", f"{100 * c.crr:.2f}%",
            f"{100 * row.inconsistency_rate:.1f}%", f"{row.sum_a / row.n:.2f}",
            f"{row.sum_b / row.n:.2f}", *_length_cells(row.length))


def _length_cells(length: dict[str, Any] | None) -> tuple[str, str]:
    if length is None:
        return "–", "–"
    lc = length["lc_win_rate"]
    return (f"{100 * length['win_rate']:.1f}% ({'–' if lc is None else f'{100 * lc:.1f}%'})",
            f"{length['mean_length_a']:.0f}/{length['mean_length_b']:.0f}")


def render_table(rows: list[ReportRow], first: str = "benchmark") -> str:
    """A plain aligned table for the terminal."""
    cells = [(first,) + HEADER[1:]] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = []
    for k, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_table(rows: list[ReportRow], first: str) -> list[str]:
    head = (first,) + HEADER[1:]
    rule = "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"
    out = ["| " + " | ".join(head) + " |", rule]
    for r in rows:
        cells = list(_cells(r))
        cells[0] = _md_escape(cells[0])
        if r.bench == "total" and r.category is None:
            cells = [f"**{c}**" for c in cells]
        out.append("| " + " | ".join(cells) + " |")
    return out


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def _md_escape(text: str) -> str:
    """User text (a category, a benchmark or model name) shown as written in Markdown: HTML
    escaped, so no markup from the data reaches a page; Markdown's own syntax (links,
    emphasis, code, table pipes) backslash-escaped; one line."""
    text = html.escape(" ".join(text.split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_code(text: str) -> str:
    """`text` as a Markdown code span (shown verbatim), whatever backticks it holds."""
    ticks = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{' '.join(text.split())}{pad}{ticks}"


def render_markdown(report: Report, *, label_a: str, label_b: str, judge: str,
                    chart: str | None = "chart.png", failed: int = 0,
                    judge_card: str | None = None) -> str:
    """A summary a person can paste into a report; `judge_card`: the judge check's card
    (Markdown), its verdict line at the top and the card itself at the end."""
    lines = [
        f"# {_md_escape(label_a)} vs {_md_escape(label_b)}",
        "",
        f"A = **{_md_escape(label_a)}**, B = **{_md_escape(label_b)}**; judge: "
        f"{_md_code(judge)}. "
        "Wins, ties and losses are A's.",
        "",
    ]
    if judge_card:
        verdict_line = next((line for line in judge_card.splitlines()
                             if line.startswith("judge ")), None)
        if verdict_line:
            lines += [f"> **Judge check**: {verdict_line} (card below)", ""]
    lines += _md_table(report.table_rows, "benchmark")
    if failed:
        lines += ["", f"{failed} question(s) could not be judged and are not counted "
                  "(see failed.jsonl; re-running the same command retries them)."]
    if report.categories:
        lines += ["", "## Per category", ""] + _md_table(report.categories, "category")
    if chart:
        lines += ["", f"![win / tie / lose per benchmark and category]({chart})"]
    lines += ["", "## How to read this", "", RULES_TEXT, ""]
    if judge_card:
        lines += [judge_card.rstrip(), ""]
    return "\n".join(lines)


def write_chart(report: Report, path: str | Path, *, label_a: str, label_b: str) -> None:
    """Stacked win/tie/lose bars per benchmark (and category), one panel per rule."""
    from synthcodec.report import charts

    # Rows without verdicts stay in the chart (empty, labelled) so it always matches the table.
    rows = report.table_rows + report.categories
    labels = [r.label if r.n else f"{r.label} (no verdicts)" for r in rows]
    height = max(2.5, 0.45 * len(rows) + 1.5)
    fig, axes = charts.new_figure(panels=2, size=(12, height), sharey=True)
    for ax, (title, rule) in zip(axes, (("AlpaGasus rule", "alpagasus"),
                                        ("CodecLM rule", "codeclm"))):
        left = [0.0] * len(rows)
        for outcome in ("win", "tie", "lose"):
            counts = [getattr(getattr(r, rule), outcome) for r in rows]
            shares = [c / r.n if r.n else 0.0 for c, r in zip(counts, rows)]
            bars = ax.barh(range(len(rows)), shares, left=left, color=charts.COLORS[outcome],
                           label=outcome)
            for bar, count, share in zip(bars, counts, shares):
                if share >= 0.06:  # label only segments wide enough to hold the number
                    ax.text(bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2,
                            str(count), ha="center", va="center", fontsize=8)
            left = [x + s for x, s in zip(left, shares)]
        ax.set_title(title)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of questions")
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(labels)
    axes[0].invert_yaxis()
    handles, names = axes[0].get_legend_handles_labels()
    # Below the panels, so the legend never covers a bar.
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"{label_a} (A) vs {label_b} (B): A's win / tie / lose")
    fig.tight_layout(rect=(0, 0.4 / height, 1, 1))
    charts.save(fig, path)


def write_report(path: Path, verdicts: list[dict[str, Any]], bench_order: list[str],
                 failed: list[dict[str, Any]], *, labels: tuple[str, str], judge: str,
                 pairs: int) -> Report:
    """`compare`'s RUN/report.json, chart.png and report.md from the published verdicts (and
    the judge card RUN holds, from this invocation or an earlier one); the report."""
    report = summarize(verdicts, bench_order, failed)
    label_a, label_b = labels
    card_dict = read_card(path)
    write_json(path / "report.json", {"a": label_a, "b": label_b, "judge": judge,
                                      "pairs": pairs, "failed": len(failed),
                                      **report.as_dict(),
                                      **({"judge_check": card_dict} if card_dict else {})})
    write_chart(report, path / "chart.png", label_a=label_a, label_b=label_b)
    markdown = render_markdown(report, label_a=label_a, label_b=label_b, judge=judge,
                               chart="chart.png", failed=len(failed),
                               judge_card=_card_markdown(path))
    with atomic_writer(path / "report.md") as fh:
        fh.write(markdown)
    return report


def _card_markdown(path: Path) -> str | None:
    try:
        return (path / CARD_MD).read_text(encoding="utf-8")
    except OSError:
        return None
