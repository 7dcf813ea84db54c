"""Engine speed against a local mock OpenAI-compatible server, side by side with a plain loop.

For each in-flight level: N requests at a fixed server latency through synthcodec's full
path (input scan, run dir, journal, cache, retries, progress accounting, publish), through
a plain aiohttp loop (the floor), and a cached re-run. Ideal = ceil(N / in-flight) x latency.
Client CPU is this process's CPU time during the run divided by N (the server is another
process). Medians over --repeat runs.

    .venv/bin/python benchmarks/bench_engine.py --requests 2000 --latency 0.2 --inflight 64 256
    # side by side with another checkout's src/ (e.g. the code before a change), one run
    .venv/bin/python benchmarks/bench_engine.py --inflight 64 --src ../old/src

Each synthcodec run is a fresh child process (importing this tree's `src/` or a `--src`
one), timed around `complete_file` only, not the interpreter's start-up or imports; runs
alternate (plain loop, each tree, its cached re-run, ...) so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.mock_server
from tests.mock_server import serve_in_subprocess  # noqa: E402


def make_input(path: Path, n: int) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "prompt": f"Question number {i}: what is {i} + {i}?"}) + "\n")
    return path


def synthcodec_run(src: Path, url: str, inflight: int, run_dir: Path, cache: Path) -> tuple[float, float, int]:
    """In a child (`--one`): one `complete` run with the synthcodec on its sys.path."""
    from synthcodec.stages.complete import complete_file
    try:
        from synthcodec.session import RunOptions
    except ImportError:  # code from before runner.py became session.py (a --src checkout)
        from synthcodec.runner import RunOptions  # type: ignore[no-redef]
    import synthcodec.llm.openai_http  # noqa: F401  (imported before the clock starts)

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


def run_child(tree: str, src: Path, url: str, inflight: int, run_dir: Path,
              cache: Path) -> tuple[float, float, int]:
    cmd = [sys.executable, __file__, "--one", str(src), "--url", url, "--inflight", str(inflight),
           "--run-dir", str(run_dir), "--cache", str(cache)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, str(ROOT)]))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    wall, cpu, sent = json.loads(out.strip().splitlines()[-1])
    return wall, cpu, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--inflight", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--src", action="append", default=[],
                        help="another checkout's src/ to measure beside this one (repeatable)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: the input file
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(synthcodec_run(Path(args.one), args.url, args.inflight[0],
                                        Path(args.run_dir), Path(args.cache))))
        return
    n = args.requests
    trees = {"synthcodec": str(ROOT / "src"),
             **{src: str(Path(src).resolve()) for src in args.src}}
    with tempfile.TemporaryDirectory() as tmp_dir, serve_in_subprocess(latency=args.latency) as (_, url):
        tmp = Path(tmp_dir)
        src = make_input(tmp / "in.jsonl", n)
        print(f"N={n} latency={args.latency}s; medians of {args.repeat} runs\n")
        print("| in flight | tree | ideal s | plain aiohttp s (% of ideal) | synthcodec s "
              "(% of ideal) | vs plain | synthcodec CPU ms/req | plain CPU ms/req "
              "| cached re-run s (requests sent) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for inflight in args.inflight:
            ideal = math.ceil(n / inflight) * args.latency
            plain: list[tuple[float, float]] = []
            ours: dict[str, list[tuple[float, float, int]]] = {name: [] for name in trees}
            cached: dict[str, list[tuple[float, int]]] = {name: [] for name in trees}
            for r in range(args.repeat):
                # side by side, alternating, so machine noise hits all alike
                plain.append(asyncio.run(plain_loop(n, url, inflight)))
                for i, (name, tree) in enumerate(trees.items()):
                    cache = tmp / f"cache-{inflight}-{r}-{i}.sqlite"
                    ours[name].append(run_child(tree, src, url, inflight,
                                                tmp / f"run-{inflight}-{r}-{i}", cache))
                    wall, _, sent = run_child(tree, src, url, inflight,
                                              tmp / f"rerun-{inflight}-{r}-{i}", cache)
                    cached[name].append((wall, sent))
            pw = statistics.median(w for w, _ in plain)
            pc = statistics.median(c for _, c in plain) / n * 1000
            for name in trees:
                ow = statistics.median(w for w, _, _ in ours[name])
                oc = statistics.median(c for _, c, _ in ours[name]) / n * 1000
                cw = statistics.median(w for w, _ in cached[name])
                cs = max(s for _, s in cached[name])
                print(f"| {inflight} | {name} | {ideal:.2f} | {pw:.2f} ({100 * ideal / pw:.0f}%) | "
                      f"{ow:.2f} ({100 * ideal / ow:.0f}%) | {100 * (ow / pw - 1):+.1f}% | "
                      f"{oc:.2f} | {pc:.2f} | {cw:.2f} ({cs}) |", flush=True)


if __name__ == "__main__":
    main()
