"""Charts as PNG bytes (report.charts: one style, Agg): the page loads nothing from the
internet, and `push` puts the same PNGs in the dataset repository."""

from __future__ import annotations

from typing import Any

from synthcodec.report import charts
from synthcodec.rundir_reader import Run

CHARTS = {
    "generate": ("scores", "gaps", "iterations", "usage"),
    "compare": ("scores", "gaps", "wtl", "usage"),
    "rate": ("scores", "usage"),
}
TITLES = {"scores": "Score histogram", "gaps": "Gap histogram", "iterations": "Kept per iteration",
          "wtl": "Win / tie / lose per category", "usage": "Tokens and dollars per stage"}


def charts_for(kind: str) -> tuple[str, ...]:
    return CHARTS.get(kind, ("usage",))


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            color=charts.COLORS["muted"])
    ax.set_xticks([])
    ax.set_yticks([])


def render(name: str, run: Run, index: Any) -> bytes:
    """One chart of `run` (index: a viewer.index.RowIndex, for the rows' columns)."""
    fig, (ax,) = charts.new_figure(size=charts.CARD)
    if name == "scores":
        scores = index.column("score")
        if scores:
            ax.hist(scores, bins=min(30, max(5, len(set(scores)))), color=charts.COLORS["bar"])
            ax.set_xlabel({"generate": "strong score (mean of both orders)",
                           "compare": "A's mean score"}.get(run.kind, "score"))
            ax.set_ylabel("rows")
        else:
            _empty(ax, "no scores yet")
        ax.set_title(TITLES[name], fontsize=10)
    elif name == "gaps":
        gaps = index.column("gap")
        theta = run.theta()
        if gaps:
            ax.hist(gaps, bins=min(40, max(5, len(set(gaps)))), color=charts.COLORS["keep"])
            if theta is not None:
                for x in (theta, -theta):
                    ax.axvline(x, color=charts.COLORS["mark"], linestyle="--")
                ax.axvspan(-theta, theta, color=charts.COLORS["mark"], alpha=0.08)
            ax.set_xlabel("gap S(strong) − S(target)" if run.kind == "generate"
                          else "mean A − mean B")
            ax.set_ylabel("rows")
        else:
            _empty(ax, "no judged gaps yet")
        ax.set_title(TITLES[name] + (f" (θ = {theta:g})" if theta is not None else ""),
                     fontsize=10)
    elif name == "iterations":
        kept = index.kept_per_iteration()
        if kept:
            ax.bar([str(k) for k in kept], list(kept.values()), color=charts.COLORS["count"])
            ax.set_xlabel("iteration (1 = base instruction)")
            ax.set_ylabel("kept rows")
        else:
            _empty(ax, "nothing kept yet")
        ax.set_title(TITLES[name], fontsize=10)
    elif name == "wtl":
        per = index.outcomes_per_category()
        if per:
            cats = sorted(per)
            bottom = [0] * len(cats)
            for outcome in ("win", "tie", "lose"):
                values = [per[c][outcome] for c in cats]
                ax.barh(cats, values, left=bottom, color=charts.COLORS[outcome], label=outcome)
                bottom = [b + v for b, v in zip(bottom, values)]
            ax.legend(fontsize=8)
            ax.set_xlabel("questions (CodecLM rule; wins are A's)")
        else:
            _empty(ax, "no verdicts yet")
        ax.set_title(TITLES[name], fontsize=10)
    elif name == "usage":
        usage = run.usage()
        if usage:
            names = list(usage)
            tokens = [int(u.get("prompt_tokens") or 0) + int(u.get("completion_tokens") or 0)
                      for u in usage.values()]
            bars = ax.bar(names, tokens, color=charts.COLORS["tokens"])
            for bar, u in zip(bars, usage.values()):
                ax.annotate(f"${float(u.get('usd') or 0):.4g}", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=8)
            ax.set_ylabel("tokens (in + out)")
        else:
            _empty(ax, "no usage recorded yet")
        ax.set_title(TITLES[name], fontsize=10)
    else:
        raise KeyError(name)
    return charts.png_bytes(fig)
