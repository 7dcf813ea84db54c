"""The generation summary: counts, kept rows per iteration, gap histogram, coverage, cost.

Computed from the published files (output.jsonl, rejected.jsonl, failed.jsonl,
metadata.jsonl) and the usage recorded in stages.json, so it can be rebuilt for any finished run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synthcodec.codeclm.files import COST_KEY, ledger
from synthcodec.codeclm.steps import KEEP_TARGET, UNRESOLVED
from synthcodec.judging.check import CARD_JSON, read_card
from synthcodec.report.histogram import text_histogram
from synthcodec.store import write_json

SUMMARY, GAP_PNG = "summary.json", "gap_histogram.png"
SAME_MODEL_WARNING = (
    "strong and target are the same model ({model}): Contrastive Filtering then measures only "
    "sampling and judging noise, not what the target is bad at. Point --strong at a more "
    "capable model for real data.")


def gaps_of(rows: Iterable[dict[str, Any]]) -> list[float]:
    """Every judged gap: each row's earlier iterations and its last one."""
    gaps: list[float] = []
    for row in rows:
        for past in row.get("history") or []:
            if past.get("gap") is not None:
                gaps.append(float(past["gap"]))
        if row.get("gap") is not None:
            gaps.append(float(row["gap"]))
    return gaps


def gap_bins(gaps: list[float], theta: float) -> list[tuple[float, int]]:
    """Unit-wide bins from -9 to 9 (the gap of two 1-10 scores), trimmed to the used range."""
    counts = Counter(max(-9, min(9, math.floor(g + 0.5))) for g in gaps)
    edge = max([int(theta) + 1, *(abs(b) for b in counts)])
    return [(float(b), counts.get(b, 0)) for b in range(-edge, edge + 1)]


def build_summary(path: Path, *, strong: str, target: str, theta: float,
                  requested: int | None, stop: str) -> dict[str, Any]:
    """The generation summary of RUN/ (`path`) from its published files and stages.json."""
    from synthcodec.io import iter_rows

    stages = ledger(path)

    def rows(name: str) -> list[dict[str, Any]]:
        return [row for _, row in iter_rows(path / name)] if (path / name).exists() else []

    kept, pool = rows("output.jsonl"), rows("metadata.jsonl")
    rejected, failed = rows("rejected.jsonl"), rows("failed.jsonl")
    by_decision = Counter(str(row.get("decision", "rejected")) for row in rejected)
    rejected += failed  # everything not kept, as the summary counts it
    if failed:
        by_decision["failed"] = len(failed)
    covered = {row.get("metadata_id") for row in kept}
    usage = stages.total_stats()
    calls, tokens = usage.get("requests", 0), (usage.get("prompt_tokens", 0)
                                               + usage.get("completion_tokens", 0))
    gaps = gaps_of(kept + rejected)
    warnings = [SAME_MODEL_WARNING.format(model=strong)] if strong == target else []
    decode_info = stages.entry("decode")
    card = read_card(path)
    return {
        **({"judge_check": {"verdict": card.get("verdict"), "line": card.get("line"),
                            "card": CARD_JSON}} if card else {}),
        "strong": strong,
        "target": target,
        "theta": theta,
        "requested": requested,
        "stop": stop,
        "kept": len(kept),
        "kept_with_target_answer": sum(1 for r in kept if r.get("decision") == KEEP_TARGET),
        "unresolved": by_decision.get(UNRESOLVED, 0),
        "rejected": len(rejected) - by_decision.get(UNRESOLVED, 0),
        "rejected_by_decision": dict(sorted(by_decision.items())),
        "near_duplicates_removed": {
            "base_instructions": decode_info.get("near_duplicates", 0),
            "kept_pairs": by_decision.get("near_duplicate", 0),
        },
        "kept_by_iteration": {str(k): v for k, v in
                              sorted(Counter(int(r["iteration"]) for r in kept).items())},
        "gap_histogram": [[b, n] for b, n in gap_bins(gaps, theta)],
        "judged": len(gaps),
        "metadata_coverage": {
            "pool": len(pool), "with_kept_rows": len(covered & {m["id"] for m in pool}),
            "share": round(len(covered & {m["id"] for m in pool}) / len(pool), 4) if pool else 0.0,
        },
        "llm": {
            **usage,
            "requests_per_kept_pair": round(calls / len(kept), 2) if kept else None,
            "tokens_per_kept_pair": round(tokens / len(kept), 1) if kept else None,
        },
        "warnings": warnings,
        "cost": cost_summary(stages.state, len(kept)),
    }


def cost_summary(state: dict[str, Any], kept: int) -> dict[str, Any] | None:
    """Dollars per stage and per kept pair (from stages.json's `state`), when every model of
    the run has a price."""
    cost = state.get(COST_KEY) or {}
    if not cost.get("priced"):
        return None if not cost else {"price_unknown": cost.get("price_unknown", [])}
    by_stage = {name: round(float(entry.get("stats", {}).get("usd", 0.0)), 6)
                for name, entry in state.items()
                if not name.startswith("_") and entry.get("stats", {}).get("usd")}
    total = sum(by_stage.values())
    return {"usd": round(total, 6), "usd_by_stage": by_stage,
            "usd_per_kept_pair": round(total / kept, 6) if kept else None}


def summary_lines(s: dict[str, Any]) -> list[str]:
    stop = {"reached": f"stopped: {s['requested']} pairs kept, as requested",
            "exhausted": "stopped: the pool of base instructions is exhausted"
                         + (f" before {s['requested']} pairs were kept" if s["requested"] else ""),
            "interrupted": "interrupted: run the same command again to resume"}.get(s["stop"], "")
    cov = s["metadata_coverage"]
    llm = s["llm"]
    near = s["near_duplicates_removed"]
    lines = [
        (s.get("judge_check") or {}).get("line") or "",
        f"kept {s['kept']} | unresolved {s['unresolved']} | rejected {s['rejected']}"
        + (f" ({', '.join(f'{k} {v}' for k, v in s['rejected_by_decision'].items() if k != UNRESOLVED)})"
           if s["rejected"] else ""),
        stop,
        "kept by iteration: " + (", ".join(f"{k}: {v}" for k, v in s["kept_by_iteration"].items())
                                 or "none"),
        (f"near-duplicates removed (ROUGE-L): {near['base_instructions']} base instructions, "
        f"{near['kept_pairs']} kept pairs"),
        (f"metadata coverage: {cov['with_kept_rows']}/{cov['pool']} pool entries produced kept "
        f"rows ({100 * cov['share']:.0f}%)"),
        f"LLM calls {llm.get('requests', 0)} (cache hits {llm.get('cache_hits', 0)}), tokens "
        f"{llm.get('prompt_tokens', 0)} in / {llm.get('completion_tokens', 0)} out"
        + (f"; per kept pair: {llm['requests_per_kept_pair']} calls, "
           f"{llm['tokens_per_kept_pair']:.0f} tokens" if s["kept"] else ""),
        (f"gap = S(strong) - S(target) over {s['judged']} judgements (keep when |gap| > "
        f"{s['theta']:g}):"),
        *("  " + line for line in text_histogram([(b, n) for b, n in s["gap_histogram"]], 30)),
    ]
    cost = s.get("cost") or {}
    if cost.get("usd"):  # free (local) models: the spend line says "cost $0 (local models)"
        lines.append(f"cost ${cost['usd']:.4f} over the run ("
                     + ", ".join(f"{k} ${v:.4f}" for k, v in cost["usd_by_stage"].items())
                     + ")" + (f"; ${cost['usd_per_kept_pair']:.6f} per kept pair"
                              if cost.get("usd_per_kept_pair") else ""))
    if not s["kept"] and s["stop"] != "interrupted":
        lines.append(why_none_kept(s))
    lines += [f"WARNING: {w}" for w in s["warnings"]]
    return [line for line in lines if line]


def why_none_kept(s: dict[str, Any]) -> str:
    """One line saying why a finished run kept nothing."""
    if not s["judged"]:
        return ("no pair kept: no instruction got a judgement (reasons in rejected.jsonl, "
                "failed.jsonl and rejects/)")
    return (f"no pair kept: all {s['judged']} judged gaps were within ±{s['theta']:g}, i.e. the "
            "judge found the target about as good as the strong model on every instruction "
            "(rewrites included); reasons per instruction in rejected.jsonl and failed.jsonl")


def write_summary(path: Path, summary: dict[str, Any]) -> list[str]:
    write_json(path / SUMMARY, summary)
    plot_gaps(path / GAP_PNG, summary)
    return [f"wrote {path / SUMMARY} and {path / GAP_PNG}"]


def plot_gaps(path: Path, summary: dict[str, Any]) -> None:
    """Bar chart of the gap histogram with the ±theta band (synthcodec.report.charts)."""
    from synthcodec.report import charts

    theta = float(summary["theta"])
    xs = [b for b, _ in summary["gap_histogram"]]
    ys = [n for _, n in summary["gap_histogram"]]
    fig, (ax,) = charts.new_figure()
    ax.bar(xs, ys, width=0.85,
           color=[charts.COLORS["keep" if abs(x) > theta else "other"] for x in xs])
    for edge in (-theta, theta):
        ax.axvline(edge, color=charts.COLORS["mark"], linestyle="--")
    ax.set_xlabel("gap = S(strong) - S(target), both orders averaged")
    ax.set_ylabel("judgements")
    title = f"Contrastive Filtering: {summary['kept']} kept (|gap| > {theta:g}, green)"
    if summary["warnings"]:
        title += "\nstrong == target: gaps are noise"
    ax.set_title(title)
    fig.tight_layout()
    charts.save(fig, path)
