"""IFD throughput with the embedded model on real Alpaca rows, and what it flags.

Runs `synthcodec score` (signals ifd, length, random; no cache, so every row is computed)
on the first N rows of the shared Alpaca sample, then `select --by ifd --frac 0.05` (the
Superfiltering budget) on the result. Prints rows/s, the projection to Alpaca's 52,002
rows, the share of rows with IFD >= 1, and the IFD distribution.

    .venv/bin/python benchmarks/bench_score.py --rows 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "alpaca" / "random_9k.json"
ALPACA_ROWS = 52_002


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="local")
    args = parser.parse_args()

    from synthcodec.session import RunOptions
    from synthcodec.stages.score import score_file
    from synthcodec.stages.select import select_rows
    from synthcodec.stages.select_rules import Rule

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        started = time.perf_counter()
        summary = score_file(args.data, tmp / "run", model=args.model,
                             options=RunOptions(progress=False, no_cache=True,
                                                limit=args.rows))
        seconds = time.perf_counter() - started
        rows = [json.loads(x) for x in (tmp / "run" / "output.jsonl").read_text().splitlines()]
        started = time.perf_counter()
        sel = select_rows(tmp / "run", tmp / "kept.json", Rule(by="ifd", frac=0.05),
                          fmt="alpaca")
        select_seconds = time.perf_counter() - started
    ifds = [r["ifd"] for r in rows]
    flagged = sum(1 for r in rows if r["ifd_ge_1"])
    rate = args.rows / seconds
    quartiles = statistics.quantiles(ifds, n=4)
    print(f"model {args.model}, llama.cpp threads "
          f"{os.environ.get('SYNTHCODEC_LLAMA_THREADS') or os.cpu_count()}, "
          f"cores {os.cpu_count()}, rows {args.rows} of {args.data.name}")
    print("| rows | scored | rejected | failed | wall s | rows/s | projected 52k rows |"
          " IFD ≥ 1 | IFD median (IQR) | select --by ifd --frac 0.05 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.rows} | {summary.kept} | {summary.rejected} | {summary.failed} | "
          f"{seconds:.1f} | {rate:.2f} | {ALPACA_ROWS / rate / 3600:.1f} h | "
          f"{flagged} ({100 * flagged / len(rows):.1f}%) | {quartiles[1]:.3f} "
          f"({quartiles[0]:.3f}–{quartiles[2]:.3f}) | {sel.kept} rows in "
          f"{select_seconds:.2f} s |")


if __name__ == "__main__":
    main()
