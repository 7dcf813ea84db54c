"""LLMClient against a bare aiohttp loop on one local mock server (issue 19).

The client as a user runs it: `Models.open` (what every command calls) gives an LLMClient over
llm/openai_http.py with the request cache (a fresh file per run: every request is a miss,
looked up and written), the pacer, the in-flight limit and the cost meter. The bare loop is a
semaphore + `session.post` + `resp.json()`, nothing else. Both send N requests with K in
flight to one mock server (`tests/mock_server.py`, its own process) at a fixed latency.

Every measurement runs in a fresh child process, so a `--src` tree (another checkout's
`src/`) can be measured side by side with this one in the same invocation; wall time and the
child's process CPU time (time.process_time: the server is another process) are taken
around the requests only, not the interpreter's start-up or imports. Runs alternate
(bare, each client, bare, ...) so that machine noise hits all alike; medians over --repeat.

    .venv/bin/python benchmarks/bench_client.py --requests 2000 --latency 0.2 --inflight 64 256 \
        --repeat 3 --src ../wt-perfbase/src
    .venv/bin/python benchmarks/bench_client.py --inflight 256 --profile client.prof  # cProfile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prompt(i: int) -> str:
    return f"Question number {i}: what is {i} + {i}?"


async def bare_loop(url: str, n: int, inflight: int) -> None:
    """The floor: a semaphore and `session.post`, no cache, limits or retries."""
    import aiohttp

    sem = asyncio.Semaphore(inflight)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int) -> None:
            async with sem:
                body = {"model": "mock-model", "max_tokens": 64,
                        "messages": [{"role": "user", "content": prompt(i)}]}
                async with session.post(url + "/chat/completions", json=body) as resp:
                    await resp.json()
        await asyncio.gather(*(one(i) for i in range(n)))


async def client_loop(url: str, n: int, inflight: int, cache: str) -> None:
    """synthcodec's client as the commands open it: records in flight = the client's limit,
    as the engine runs them."""
    from synthcodec.llm.base import Request
    try:
        from synthcodec.session import Models, RunOptions
    except ImportError:  # code from before runner.py became session.py (a --src checkout)
        from synthcodec.runner import Models, RunOptions  # type: ignore[no-redef]

    models = Models.open({"model": f"mock-model@{url}"},
                         RunOptions(concurrency=inflight, cache_path=cache, progress=False))
    client = models["model"]
    sem = asyncio.Semaphore(inflight)

    async def one(i: int) -> None:
        async with sem:
            await client.complete(Request.chat(prompt(i), max_tokens=64))
    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await models.aclose()
    assert models.stats.requests == n and models.stats.cache_hits == 0, models.stats


def import_first(kind: str) -> None:
    """What the run imports, imported before the clock starts: start-up is not the
    requests' cost (inside the timed coroutine, synthcodec's imports added ~0.4 s of CPU to
    every client run and aiohttp's ~0.2 s to every bare one)."""
    import aiohttp  # noqa: F401

    if kind == "client":
        import synthcodec.llm.base
        import synthcodec.llm.openai_http
        try:
            import synthcodec.session
        except ImportError:  # code from before runner.py became session.py
            import synthcodec.runner  # noqa: F401


def measure_one(args: argparse.Namespace) -> None:
    """Child process: one run, its wall and CPU seconds as a JSON line on stdout."""
    import_first(args.one)
    if args.one == "bare":
        work = bare_loop(args.url, args.requests, args.inflight[0])
    else:
        work = client_loop(args.url, args.requests, args.inflight[0], args.cache)
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(work)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(json.dumps({"wall": wall, "cpu": cpu}))


def run_child(kind: str, src: str, url: str, n: int, inflight: int, tmp: Path,
              profile: str | None = None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", kind, "--url", url, "--requests", str(n),
           "--inflight", str(inflight), "--cache", str(tmp / f"cache-{time.monotonic_ns()}.sqlite")]
    if profile:
        cmd += ["--profile", profile]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, str(ROOT)]))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def print_profile(path: str, lines: int = 18) -> None:
    import pstats

    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--inflight", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--src", action="append", default=[],
                        help="another checkout's src/ to measure beside this one (repeatable)")
    parser.add_argument("--profile", metavar="FILE",
                        help="one client run under cProfile at the first --inflight (and one "
                             "bare run, to FILE.bare); print the client's top")
    parser.add_argument("--one", choices=["bare", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure_one(args)
        return

    sys.path.insert(0, str(ROOT))
    from tests.mock_server import serve_in_subprocess

    here = str(ROOT / "src")
    trees = {"this tree": here, **{src: str(Path(src).resolve()) for src in args.src}}
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp_dir, \
            serve_in_subprocess(latency=args.latency) as (_, url):
        tmp = Path(tmp_dir)
        if args.profile:
            # The bare loop too (FILE.bare), so its own share of aiohttp and asyncio is known.
            for kind, path in (("bare", args.profile + ".bare"), ("client", args.profile)):
                result = run_child(kind, here, url, n, args.inflight[0], tmp, path)
                print(f"{kind} at {args.inflight[0]} in flight under cProfile: "
                      f"{result['wall']:.2f} s wall, {result['cpu']:.2f} s CPU ({path})\n")
            print_profile(args.profile)
            return
        print(f"N={n} latency={args.latency}s; medians of {args.repeat} runs; ratios against "
              "the bare loop of the same runs\n")
        print("| in flight | client | wall s | CPU s | throughput vs bare | CPU vs bare |")
        print("|---|---|---|---|---|---|")
        for inflight in args.inflight:
            runs: dict[str, list[dict[str, float]]] = {"bare aiohttp": []}
            runs.update({name: [] for name in trees})
            run_child("bare", here, url, n, inflight, tmp)  # warm the server's connections
            for _ in range(args.repeat):
                runs["bare aiohttp"].append(run_child("bare", here, url, n, inflight, tmp))
                for name, src in trees.items():
                    runs[name].append(run_child("client", src, url, n, inflight, tmp))
            bare_wall = statistics.median(r["wall"] for r in runs["bare aiohttp"])
            bare_cpu = statistics.median(r["cpu"] for r in runs["bare aiohttp"])
            for name, results in runs.items():
                wall = statistics.median(r["wall"] for r in results)
                cpu = statistics.median(r["cpu"] for r in results)
                print(f"| {inflight} | {name} | {wall:.2f} | {cpu:.2f} | {bare_wall / wall:.3f}x "
                      f"| {cpu / bare_cpu:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
