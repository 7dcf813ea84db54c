"""Engine speed against a local mock OpenAI-compatible server, side by side with a plain loop.

For each in-flight level: N requests at a fixed server latency through synthcodec's full
path (input scan, run dir, journal, cache, retries, progress accounting, publish), through
a plain aiohttp loop (the floor), and a cached re-run. Ideal = ceil(N / in-flight) x latency.
Client CPU is this process's CPU time during the run divided by N (the server is another
process). Medians over --repeat runs.

    .venv/bin/python benchmarks/bench_engine.py --requests 2000 --latency 0.2 --inflight 64 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from synthcodec.session import RunOptions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.mock_server
from tests.mock_server import serve_in_subprocess  # noqa: E402


def make_input(path: Path, n: int) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "prompt": f"Question number {i}: what is {i} + {i}?"}) + "\n")
    return path


def synthcodec_run(src: Path, url: str, inflight: int, run_dir: Path, cache: Path) -> tuple[float, float, int]:
    from synthcodec.stages.complete import complete_file

    cpu0, t0 = time.process_time(), time.perf_counter()
    # what `synthcodec complete` runs, minus its option handling
    summary = complete_file(src, run_dir, model=f"mock-model@{url}", max_tokens=64,
                            options=RunOptions(concurrency=inflight, cache_path=str(cache),
                                               progress=False))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert summary.kept == summary.records_in, summary.lines()
    return wall, cpu, summary.stats.requests


async def plain_loop(n: int, url: str, inflight: int) -> tuple[float, float]:
    """The floor: a bare aiohttp loop with a semaphore, no cache, no journal, no retries."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    sem = asyncio.Semaphore(inflight)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int) -> None:
            async with sem:
                body = {"model": "mock-model", "max_tokens": 64, "messages": [
                    {"role": "user", "content": f"Question number {i}: what is {i} + {i}?"}]}
                async with session.post(url + "/chat/completions", json=body) as resp:
                    await resp.json()
        await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--inflight", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp_dir, serve_in_subprocess(latency=args.latency) as (_, url):
        tmp = Path(tmp_dir)
        src = make_input(tmp / "in.jsonl", n)
        print(f"N={n} latency={args.latency}s; medians of {args.repeat} runs\n")
        print("| in flight | ideal s | plain aiohttp s (% of ideal) | synthcodec s (% of ideal) "
              "| synthcodec CPU ms/req | plain CPU ms/req | cached re-run s (requests sent) |")
        print("|---|---|---|---|---|---|---|")
        for inflight in args.inflight:
            ideal = math.ceil(n / inflight) * args.latency
            ours, plain, cached = [], [], []
            for r in range(args.repeat):
                # side by side, alternating, so machine noise hits both alike
                plain.append(asyncio.run(plain_loop(n, url, inflight)))
                cache = tmp / f"cache-{inflight}-{r}.sqlite"
                ours.append(synthcodec_run(src, url, inflight, tmp / f"run-{inflight}-{r}", cache))
                wall, _, sent = synthcodec_run(src, url, inflight, tmp / f"rerun-{inflight}-{r}", cache)
                cached.append((wall, sent))
            ow = statistics.median(w for w, _, _ in ours)
            oc = statistics.median(c for _, c, _ in ours) / n * 1000
            pw = statistics.median(w for w, _ in plain)
            pc = statistics.median(c for _, c in plain) / n * 1000
            cw = statistics.median(w for w, _ in cached)
            cs = max(s for _, s in cached)
            print(f"| {inflight} | {ideal:.2f} | {pw:.2f} ({100 * ideal / pw:.0f}%) | "
                  f"{ow:.2f} ({100 * ideal / ow:.0f}%) | {oc:.2f} | {pc:.2f} | {cw:.2f} ({cs}) |",
                  flush=True)


if __name__ == "__main__":
    main()
