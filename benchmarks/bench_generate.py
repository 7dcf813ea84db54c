"""Overhead of a 2,000-pair `generate` run: the time synthcodec spends beyond the LLM calls.

A scripted world answers every CodecLM request instantly (the target is bad at a third of
the instructions, so those are kept), either in-process (`--backend fake`: no HTTP, the
floor) or through the foundation's mock OpenAI-compatible server (`--backend mock`, in this
process, with `--latency` seconds per request). With zero latency, all of the wall time is
overhead: run dir, journals, cache, prompts, parsing, judging logic, ROUGE-L, publishing.

    PYTHONPATH=src python3 benchmarks/bench_generate.py --backend fake -n 2000
    PYTHONPATH=src python3 benchmarks/bench_generate.py --backend mock -n 2000
    # the server in its own process (its CPU no longer shares our GIL), 0.2 s per request,
    # and the same with a slow tail: 10% of requests (by a hash of the prompt) 10x slower
    PYTHONPATH=src python3 benchmarks/bench_generate.py --backend mock-process \
        --latency 0.2 --inflight 256 --slow-tail 0.1
    # --batch: the same world through the mock server's batch API (/v1/files, /v1/batches)
    PYTHONPATH=src python3 benchmarks/bench_generate.py --backend mock -n 200 --batch
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.mock_server

from synthcodec.codeclm import CodecConfig, generate
from synthcodec.llm import FakeBackend
from synthcodec.session import RunOptions

GOOD, BAD = "A careful, correct and complete answer.", "I do not know."
MARKERS = ["HARD", "EASY", "FLIP"]
USE_CASES = ["creative writing", "code generation", "science explanation", "email writing",
             "travel planning", "summarization", "math reasoning", "data analysis",
             "career advice", "cooking", "history", "legal questions", "health tips",
             "product description", "translation"]


def _words(key: str, n: int = 10) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest() * 2
    return " ".join("w" + digest[i:i + 6] for i in range(0, 6 * n, 6))


def seeds(n: int) -> list[dict[str, str]]:
    return [{"id": f"b{i}", "instruction": f"Seed {i} about {USE_CASES[i % len(USE_CASES)]}: "
             + _words(str(i), 5)} for i in range(n)]


def reply(messages: list[dict[str, str]], schema: bool, model: str) -> str:
    prompt = messages[-1]["content"]
    if model == "target":
        return BAD if prompt.startswith("HARD") else GOOD
    if schema:
        i = int(re.search(r"Seed (\d+) about", prompt.rsplit("Instruction:", 1)[1]).group(1))
        return json.dumps({"use_case": USE_CASES[i % len(USE_CASES)],
                           "skills": [f"skill {i % 17}", f"skill {(i * 7) % 23 + 17}"]})
    if prompt.startswith("You are an instruction writer"):
        n = int(re.search(r"Write (\d+) diverse", prompt).group(1))
        return "\n".join(f"{k + 1}. {MARKERS[k % 3]} {_words(prompt + str(k))}" for k in range(n))
    if prompt.startswith("You are an expert who judges"):
        return ("Rubrics:\n1. Depth\n2. Constraints\n3. Breadth\n4. Rigor\nActions:\n"
                "1. Add a depth requirement.\n2. Add a constraint.\n3. Widen the scope.\n"
                "4. Demand a proof.")
    if prompt.startswith("Rewrite the instruction"):
        instruction = prompt.rsplit("Instruction: ", 1)[1]
        return f"{instruction} {_words(instruction, 1)}"
    if "[Assistant 1's Answer]" in prompt:
        first = prompt.split("ASSISTANT 1 ANSWER>>>\n", 1)[1]
        second = prompt.split("ASSISTANT 2 ANSWER>>>\n", 1)[1]
        s1 = 9 if first.startswith(GOOD) else 2
        s2 = 9 if second.startswith(GOOD) else 2
        return f"{s1} {s2}\nExplanation."
    return BAD if prompt.startswith("FLIP") else GOOD


def slow(prompt: str, fraction: float) -> bool:
    """Is this request one of the slow tail? (a stable pick: hash of the prompt)"""
    digest = hashlib.sha256(prompt.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def serve(port_file: str, latency: float, slow_tail: float) -> None:
    """The mock server with the scripted world, in its own process (--backend mock-process)."""
    from tests.mock_server import MockServer

    async def responder(body: dict[str, Any]) -> str:
        schema = isinstance(body.get("response_format"), dict)
        text = reply(body["messages"], schema, body.get("model", ""))
        if slow_tail and slow(json.dumps(body["messages"]), slow_tail):
            await asyncio.sleep(9 * latency)  # on top of the server's own latency: 10x
        return text

    async def main() -> None:
        server = MockServer(latency=latency, responder=responder)
        url = await server.start()
        Path(port_file).write_text(url)
        await asyncio.Event().wait()

    asyncio.run(main())


def fake(model: str) -> FakeBackend:
    return FakeBackend(lambda r: reply(list(r.messages), r.json_schema is not None, model),
                       name=model)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    seed_file = tmp / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps(s) + "\n" for s in seeds(args.seeds)))
    options = RunOptions(progress=False, cache_path=str(tmp / "cache.sqlite"),
                         concurrency=args.inflight, batch=args.batch, batch_poll=0.05)
    cfg = CodecConfig(pool_size=args.size)
    strong, target, backends = "fake:strong", "fake:target", None
    server = loop = None
    child = None
    if args.batch and args.backend == "fake":
        raise SystemExit("--batch needs --backend mock or mock-process")
    if args.backend == "fake":
        backends = {"strong": fake("strong"), "target": fake("target")}
    elif args.backend == "mock-process":
        import subprocess

        port_file = tmp / "url"
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file),
                                  "--latency", str(args.latency),
                                  "--slow-tail", str(args.slow_tail)])
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise SystemExit("mock server did not start")
            time.sleep(0.05)
        url = port_file.read_text()
        strong, target = f"strong@{url}", f"target@{url}"
    else:
        from tests.mock_server import MockServer

        def responder(body: dict[str, Any]) -> str:
            schema = isinstance(body.get("response_format"), dict)
            return reply(body["messages"], schema, body.get("model", ""))

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        server = MockServer(latency=args.latency, responder=responder)
        url = asyncio.run_coroutine_threadsafe(server.start(), loop).result()
        strong, target = f"strong@{url}", f"target@{url}"
    cpu0 = time.process_time()
    t0 = time.monotonic()
    result = generate(seeds=str(seed_file), run_dir=tmp / "run", strong=strong, target=target,
                      n=args.n, cfg=cfg, options=options, backends=backends)
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    if server is not None and loop is not None:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
    if child is not None:
        child.terminate()
        child.wait()
    s = result.report or {}
    requests = s.get("llm", {}).get("requests", 0)
    # Request-bound ideal: every slot busy all the time (mean latency, slow tail included).
    mean_latency = args.latency * (1 + 9 * args.slow_tail)
    ideal = requests / args.inflight * mean_latency
    return {"backend": args.backend, "latency_s": args.latency, "inflight": args.inflight,
            "slow_tail": args.slow_tail, "ideal_s": round(ideal, 2),
            "ideal_over_wall": round(ideal / wall, 3) if args.latency else None,
            "n": args.n, "kept": s.get("kept"), "stop": s.get("stop"), "requests": requests,
            "batch": args.batch, "batches": s.get("llm", {}).get("batches", 0),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "overhead_ms_per_request": round(1000 * wall / max(1, requests), 3),
            "overhead_ms_per_kept_pair": round(1000 * wall / max(1, s.get("kept") or 1), 2),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["fake", "mock", "mock-process"], default="fake")
    p.add_argument("--slow-tail", type=float, default=0.0,
                   help="fraction of requests 10x slower (mock-process only)")
    p.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--seeds", type=int, default=60)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--batch", action="store_true",
                   help="through the batch API (--backend mock or mock-process)")
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.latency, args.slow_tail)
        return
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
