"""Peak memory against input size: `complete` (or `score`: IFD, length, random) over 100k
and 1M rows (fake model, no cache).

Each size runs in its own process; peak RSS comes from getrusage in that process.

    .venv/bin/python benchmarks/bench_memory.py --rows 100000 1000000
    .venv/bin/python benchmarks/bench_memory.py --command score --rows 10000 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import resource, sys, time
from synthcodec.cli import main
t = time.perf_counter()
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "SECONDS", time.perf_counter() - t)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--command", choices=("complete", "score"), default="complete")
    args = parser.parse_args()
    argv = (["complete", "-m", "fake:echo"] if args.command == "complete"
            else ["score", "-m", "fake:echo", "--signals", "ifd,length,random"])
    print("| input rows | peak RSS MiB | wall s | ratio to first |")
    print("|---|---|---|---|")
    first = None
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for n in args.rows:
            src = tmp / f"in-{n}.jsonl"
            with open(src, "w") as fh:
                for i in range(n):
                    row = ({"id": i, "prompt": f"Question {i}: what is {i} squared?"}
                           if args.command == "complete" else
                           {"instruction": f"Square {i}", "output": f"{i} squared is {i * i}"})
                    fh.write(json.dumps(row) + "\n")
            out = subprocess.run(
                [sys.executable, "-c", CHILD, argv[0], str(src), *argv[1:], "--no-cache",
                 "-q", "-j", "64", "-o", str(tmp / f"run-{n}")],
                capture_output=True, text=True, check=True,
            )
            line = next(l for l in out.stdout.splitlines() if l.startswith("PEAK_KB"))
            _, kb, _, secs = line.split()
            mib = int(kb) / 1024
            first = first or mib
            print(f"| {n:,} | {mib:.1f} | {float(secs):.0f} | {mib / first:.2f} |", flush=True)
            src.unlink()


if __name__ == "__main__":
    main()
