"""Scores read as written (text) against probability-weighted (logprobs), side by side in one
run: the judge check of one judge both ways, as a rater on Alpaca rows and as a pairwise
judge on text-davinci-003 vs -001 answers (../shared/data). Per way: requests, completion
tokens per verdict, wall time per 100 verdicts, and the judge card's probe rates.

Each way gets a fresh request cache, so every verdict is really computed (nothing from an
earlier run); the same probes are used both ways.

    SYNTHCODEC_LLAMA_THREADS=1 .venv/bin/python benchmarks/bench_judge_scores.py \
        --probes 5 --out docs/judge_scores.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from synthcodec.judging.check.files import CheckSettings, check_files
from synthcodec.session import RunOptions

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
ALPACA = DATA / "alpaca" / "random_9k.json"
DAVINCI = [DATA / "predictions" / "text-davinci-003_sinstruct.jsonl",
           DATA / "predictions" / "text-davinci-001_sinstruct.jsonl"]


def one(role: str, scores: str, judge: str, probes: int, rows: Path, work: Path
        ) -> dict[str, object]:
    data = [str(rows)] if role == "rater" else [str(p) for p in DAVINCI]
    settings = CheckSettings(scores=scores, key="instruction,input" if role == "pairwise" else None)
    options = RunOptions(progress=False, cache_path=str(work / f"{role}-{scores}.sqlite"))
    started = time.perf_counter()
    card = check_files(data, work / f"{role}-{scores}", judge=judge, options=options,
                       role=role, per_kind=probes, settings=settings)
    wall = time.perf_counter() - started
    out = card.as_dict()
    return {"role": role, "scores": scores, "wall_s": round(wall, 1), "requests": card.requests,
            "verdict": out["verdict"], "line": out["line"],
            "probes": {k: {"rate": v["rate"], "n": v["n"], "right": v["right"],
                           "tie": v["tie"], "wrong": v["wrong"], "failed": v["failed"]}
                       for k, v in out["probes"].items()},
            "spread": out.get("spread"), "first_shown_wins": out.get("first_shown_wins"),
            "cache": str(work / f"{role}-{scores}.sqlite")}


def completion_tokens(cache: str) -> tuple[int, int]:
    """(replies, completion tokens) in a cache file: what the way generated."""
    import sqlite3

    db = sqlite3.connect(cache)
    n, tokens = db.execute("SELECT COUNT(*), SUM(completion_tokens) FROM completions").fetchone()
    db.close()
    return int(n or 0), int(tokens or 0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judge", default="local")
    parser.add_argument("--probes", type=int, default=5, help="probes per kind")
    parser.add_argument("--rows", type=int, default=200,
                        help="Alpaca rows the rater's probes are spread over")
    parser.add_argument("--roles", default="rater,pairwise")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-judge-scores-"))
    rows = work / "alpaca.jsonl"
    alpaca = json.loads(ALPACA.read_text(encoding="utf-8"))[: args.rows]
    rows.write_text("".join(json.dumps(r) + "\n" for r in alpaca), encoding="utf-8")
    results = []
    for role in args.roles.split(","):
        for scores in ("text", "logprobs"):
            result = one(role, scores, args.judge, args.probes, rows, work)
            replies, tokens = completion_tokens(str(result["cache"]))
            result["replies"], result["completion_tokens"] = replies, tokens
            result["tokens_per_verdict"] = round(tokens / replies, 1) if replies else None
            result["wall_s_per_100_verdicts"] = (round(100 * float(result["wall_s"]) / replies, 1)
                                                 if replies else None)
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    print("| judge as | scores | replies | tokens per verdict | wall s per 100 verdicts | "
          "verdict | swap | wrong question | cut short | padding | identical |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        probes = r["probes"]
        cells = [f"{probes[k]['rate']:.0%} (n={probes[k]['n']})"
                 if k in probes and probes[k]["rate"] is not None else "–"
                 for k in ("swap", "wrong_question", "cut_short", "padding", "identical")]
        print(f"| {r['role']} | {r['scores']} | {r['replies']} | {r['tokens_per_verdict']} | "
              f"{r['wall_s_per_100_verdicts']} | {r['verdict']} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps({"judge": args.judge, "probes": args.probes,
                                        "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
