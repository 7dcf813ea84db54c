"""Issue 12's W3 (a rate limit the client is not told) and W7 (JSON output), side by side with
a bare aiohttp loop, against the local mock OpenAI-compatible server (127.0.0.1).

W3: the server holds a token bucket of 10 refilled at 10/s (600/min); without a token it
answers 429 at once with an OpenAI-style rate_limit_exceeded body and "Retry-After: 1"
(whole seconds, no retry-after-ms); admitted requests take 50 ms and 5% of admitted attempts
(by a hash of prompt + attempt number) answer 500 or 503. N = 1,200 distinct prompts, 32 in
flight, no limit given to either client. Ideal = N / 10 per s = 120 s.

W7: each prompt asks for {"score": k} with k fixed per prompt; 10% of prompts get invalid
JSON ("Sure! Here is the rating: {score: 3,}") on their first attempt only; 2% get
finish_reason "length" with the cut body '{"score' on every attempt. N = 1,000, 32 in flight.
Best possible: every prompt outside the cut set valid, the cut set reported failed, 0 wrong.

synthcodec runs as the user would: `synthcodec complete` (W7 with --json). The bare loop is
a semaphore + session.post that honours Retry-After, retries 5xx with backoff and (W7)
re-asks once on unparsable JSON. Server counters are reset between the two.

    .venv/bin/python benchmarks/bench_pacing.py                 # both, full size (~5 min)
    .venv/bin/python benchmarks/bench_pacing.py --only w7
    .venv/bin/python benchmarks/bench_pacing.py --w3-requests 300 --w7-requests 200   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.mock_server
from synthcodec.records import reason_of  # noqa: E402
from tests.mock_server import hash_fraction, serve_in_subprocess  # noqa: E402

W3_SERVER = dict(rate_limit_rps=10, rate_limit_burst=10, retry_after_style="seconds",
                 latency=0.05, fail_hash_rate=0.05)
W7_INVALID, W7_CUT = 0.10, 0.02
W7_SERVER = dict(reply_json_in_prompt=True, invalid_json_first_rate=W7_INVALID,
                 truncate_rate=W7_CUT)
SYNTHCODEC = str(Path(sys.executable).with_name("synthcodec"))


def _stats(url: str, reset: bool = False) -> dict[str, Any]:
    base = url.removesuffix("/v1")
    if reset:
        urllib.request.urlopen(urllib.request.Request(base + "/stats/reset", method="POST"),
                               timeout=5).read()
        return {}
    with urllib.request.urlopen(base + "/stats", timeout=5) as resp:
        return json.loads(resp.read())


def w3_prompts(n: int) -> list[str]:
    return [f"Question number {i}: what is {i} + {i}?" for i in range(n)]


def w7_prompts(n: int) -> list[str]:
    return [f'Item {i}: rate it. Reply with exactly {{"score": {i % 6}}}' for i in range(n)]


def write_input(path: Path, prompts: list[str]) -> Path:
    with open(path, "w") as fh:
        for i, prompt in enumerate(prompts):
            fh.write(json.dumps({"id": i, "prompt": prompt}) + "\n")
    return path


def run_synthcodec(src: Path, url: str, run_dir: Path, *extra: str) -> tuple[float, int]:
    env = dict(os.environ, SYNTHCODEC_CACHE=str(run_dir.parent / f"{run_dir.name}-cache.sqlite"))
    t0 = time.perf_counter()
    result = subprocess.run([SYNTHCODEC, "complete", str(src), "-m", f"mock-model@{url}",
                             "-o", str(run_dir), "-j", "32", "-q", *extra],
                            capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if result.returncode not in (0, 1):
        raise SystemExit(f"synthcodec failed ({result.returncode}): {result.stderr}")
    return wall, result.returncode


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


async def bare_loop(prompts: list[str], url: str, *, json_mode: bool) -> tuple[float, dict[int, Any], dict[int, str]]:
    """The floor: semaphore + post; Retry-After honoured, 5xx retried, one JSON re-ask."""
    sem = asyncio.Semaphore(32)
    ok: dict[int, Any] = {}
    failed: dict[int, str] = {}
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def post(messages: list[dict[str, str]]) -> dict[str, Any] | None:
            errors = 0
            while True:
                body: dict[str, Any] = {"model": "mock-model", "max_tokens": 64, "messages": messages}
                if json_mode:
                    body["response_format"] = {"type": "json_object"}
                async with sem:
                    async with session.post(url + "/chat/completions", json=body) as resp:
                        status, data = resp.status, await resp.read()
                        retry = resp.headers.get("Retry-After")
                if status == 200:
                    return json.loads(data)["choices"][0]
                if status == 429:
                    await asyncio.sleep(float(retry or 1) + random.uniform(0, 0.1))
                    continue
                errors += 1
                if errors >= 8:
                    return None
                await asyncio.sleep(random.uniform(0.25, 0.5) * 2 ** (errors - 1))

        async def one(i: int, prompt: str) -> None:
            messages = [{"role": "user", "content": prompt}]
            for _ in range(2 if json_mode else 1):
                choice = await post(messages)
                if choice is None:
                    failed[i] = "gave up on 5xx"
                    return
                text = choice["message"]["content"]
                if not json_mode:
                    ok[i] = text
                    return
                if choice["finish_reason"] == "length":
                    failed[i] = "finish_reason=length"
                    return
                try:
                    ok[i] = json.loads(text)
                    return
                except ValueError:
                    messages = messages + [{"role": "assistant", "content": text},
                                           {"role": "user", "content": "Not valid JSON. Reply again with only the JSON object."}]
            failed[i] = "invalid JSON"

        await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    return time.perf_counter() - t0, ok, failed


def w3(n: int, tmp: Path) -> None:
    prompts = w3_prompts(n)
    src = write_input(tmp / "w3.jsonl", prompts)
    ideal = n / W3_SERVER["rate_limit_rps"]
    print(f"\nW3: N={n}, 32 in flight, server 10 req/s (bucket 10), 429 + Retry-After: 1, 50 ms, "
          f"5% 500/503; no limit given; ideal {ideal:.0f} s\n")
    print("| client | wall s (ideal %.0f) | lost | requests | requests per record | 429s | 5xx |" % ideal)
    print("|---|---|---|---|---|---|---|")
    with serve_in_subprocess(**W3_SERVER) as (_, url):
        wall, ok, failed = asyncio.run(bare_loop(prompts, url, json_mode=False))
        s = _stats(url)
        _row("bare aiohttp loop", wall, n - len(ok), s, n)
        _stats(url, reset=True)
        wall, _ = run_synthcodec(src, url, tmp / "w3-run")
        s = _stats(url)
        out = _lines(tmp / "w3-run" / "output.jsonl")
        _row("synthcodec complete", wall, n - len(out), s, n)


def _row(name: str, wall: float, lost: int, s: dict[str, Any], n: int) -> None:
    by = s["by_status"]
    five = sum(v for k, v in by.items() if k.startswith("5"))
    print(f"| {name} | {wall:.1f} | {lost} | {s['total_requests']} | "
          f"{s['total_requests'] / n:.3f} | {by.get('429', 0)} | {five} |", flush=True)


def w7(n: int, tmp: Path) -> None:
    prompts = w7_prompts(n)
    src = write_input(tmp / "w7.jsonl", prompts)
    cut = {i for i, p in enumerate(prompts) if hash_fraction("truncate", p) < W7_CUT}
    expected = {i: {"score": i % 6} for i in range(n) if i not in cut}
    print(f"\nW7: N={n}, 32 in flight, 10% invalid first answers, 2% cut off every time; "
          f"best possible {len(expected)} valid / 0 wrong / {len(cut)} failed\n")
    print("| client | valid | wrong | failed (with reason) | requests per record | wall s |")
    print("|---|---|---|---|---|---|")
    with serve_in_subprocess(**W7_SERVER) as (_, url):
        wall, ok, failed = asyncio.run(bare_loop(prompts, url, json_mode=True))
        s = _stats(url)
        good = sum(1 for i, v in ok.items() if expected.get(i) == v)
        print(f"| bare aiohttp loop | {good} | {len(ok) - good} | {len(failed)} | "
              f"{s['total_requests'] / n:.3f} | {wall:.1f} |", flush=True)
        _stats(url, reset=True)
        wall, _ = run_synthcodec(src, url, tmp / "w7-run", "--json")
        s = _stats(url)
        out = _lines(tmp / "w7-run" / "output.jsonl")
        bad = _lines(tmp / "w7-run" / "failed.jsonl")
        good = sum(1 for r in out if expected.get(r["id"]) == r["response"])
        reasons = sum(1 for r in bad if "finish_reason=length" in reason_of(r))
        print(f"| synthcodec complete --json | {good} | {len(out) - good} | {len(bad)} ({reasons}) | "
              f"{s['total_requests'] / n:.3f} | {wall:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--w3-requests", type=int, default=1200)
    parser.add_argument("--w7-requests", type=int, default=1000)
    parser.add_argument("--only", choices=("w3", "w7"), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.only in (None, "w7"):
            w7(args.w7_requests, tmp)
        if args.only in (None, "w3"):
            w3(args.w3_requests, tmp)


if __name__ == "__main__":
    main()
