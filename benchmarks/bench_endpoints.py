"""Throughput against 1, 2 and 4 endpoints of one model (`NAME@URL1,URL2,...`), each a mock
server that serves at most K requests at once (its "GPU": the rest queue), so one endpoint
gives at most K / latency requests per second and N endpoints N times that, if the client
is not the limit.

synthcodec runs as the user would: `synthcodec complete` with `-j` per endpoint, a fresh
cache per run, every mock server in its own process on 127.0.0.1. Time is the run's own
(`this_invocation.seconds` in manifest.json: input check to published output, without the
interpreter's start-up); ideal = requests / (endpoints × K / latency).

    .venv/bin/python benchmarks/bench_endpoints.py                      # 1,000 requests, ~25 s
    .venv/bin/python benchmarks/bench_endpoints.py --requests 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.mock_server
from tests.mock_server import serve_in_subprocess  # noqa: E402

SYNTHCODEC = str(Path(sys.executable).with_name("synthcodec"))


def run_once(src: Path, urls: list[str], work: Path, per_endpoint: int) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(dir=work))
    spec = "mock-model@" + ",".join(urls)
    t0 = time.perf_counter()
    result = subprocess.run([SYNTHCODEC, "complete", str(src), "-m", spec,
                             "-o", str(run_dir / "run"), "--cache", str(run_dir / "cache.sqlite"),
                             "-j", str(per_endpoint), "-q"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"synthcodec failed ({result.returncode}): {result.stderr}")
    manifest = json.loads((run_dir / "run" / "manifest.json").read_text())
    return {"seconds": manifest["this_invocation"]["seconds"], "wall": wall,
            "requests": manifest["this_invocation"]["requests"],
            "per_endpoint": [c["requests"] for c in manifest.get("endpoints", {}).values()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--capacity", type=int, default=8, help="K: requests each server "
                        "serves at once")
    parser.add_argument("--inflight", type=int, default=16, help="-j: in flight per endpoint")
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        work = Path(tmp)
        src = work / "in.jsonl"
        src.write_text("".join(json.dumps({"id": i, "prompt": f"question {i}"}) + "\n"
                               for i in range(args.requests)))
        urls = [servers.enter_context(serve_in_subprocess(
            latency=args.latency, max_concurrency=args.capacity))[1]
            for _ in range(max(args.endpoints))]
        print(f"{args.requests} requests, {args.latency * 1000:g} ms latency, each server "
              f"serves {args.capacity} at once, -j {args.inflight} per endpoint")
        print("| endpoints | ideal s | synthcodec s (median of "
              f"{args.repeat}) | req/s | % of ideal | speed-up | % of linear | "
              "requests per endpoint |")
        print("|---|---|---|---|---|---|---|---|")
        base: float | None = None
        for n in args.endpoints:
            runs = [run_once(src, urls[:n], work, args.inflight) for _ in range(args.repeat)]
            seconds = statistics.median(r["seconds"] for r in runs)
            rate = args.requests / seconds
            ideal = args.requests / (n * args.capacity / args.latency)
            if base is None:  # per-endpoint throughput at the first (smallest) count
                base = rate / n
            speedup = rate / base
            spread = runs[len(runs) // 2]["per_endpoint"] or [runs[0]["requests"]]
            print(f"| {n} | {ideal:.2f} | {seconds:.2f} | {rate:.0f} "
                  f"| {100 * ideal / seconds:.0f}% "
                  f"| {speedup:.2f}x | {100 * speedup / n:.0f}% | "
                  f"{' / '.join(str(x) for x in spread)} |", flush=True)


if __name__ == "__main__":
    main()
