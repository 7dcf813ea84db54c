"""Embedded backend throughput against calling llama-cpp-python directly, same prompts.

Both sides load the same GGUF with the same settings and decode the same prompts greedily;
runs alternate (direct, ours, direct, ours, ...) so machine noise hits both alike.

    .venv/bin/python benchmarks/bench_embedded.py --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from synthcodec.llm import Request
from synthcodec.llm.client import LLMClient
from synthcodec.llm.llamacpp import LlamaCppBackend, default_gguf

PROMPTS = [
    "Give three tips for staying healthy.",
    "Explain what a hash table is.",
    "Write a short poem about the sea.",
    "What are the main causes of climate change?",
    "Describe how to make a cup of tea.",
    "Why is the sky blue?",
]


def direct(llama, max_tokens: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    tokens = 0
    for p in PROMPTS:
        out = llama.create_chat_completion(messages=[{"role": "user", "content": p}],
                                           temperature=0.0, max_tokens=max_tokens)
        tokens += out["usage"]["completion_tokens"]
    return tokens, time.perf_counter() - t0


def ours(client: LLMClient, max_tokens: int) -> tuple[int, float]:
    async def go() -> int:
        done = await asyncio.gather(*(client.complete(Request.chat(p, max_tokens=max_tokens),
                                                      allow_truncated=True) for p in PROMPTS))
        return sum(c.completion_tokens for c in done)

    t0 = time.perf_counter()
    tokens = asyncio.run(go())
    return tokens, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    from llama_cpp import Llama

    backend = LlamaCppBackend()
    llama = Llama(model_path=str(default_gguf()), n_ctx=backend.n_ctx,
                  n_threads=backend.n_threads, verbose=False)
    client = LLMClient(backend)  # no cache: every call decodes
    direct(llama, 8)  # warm both
    ours(client, 8)
    d_rates, o_rates = [], []
    for _ in range(args.repeat):
        tok, sec = direct(llama, args.max_tokens)
        d_rates.append(tok / sec)
        tok, sec = ours(client, args.max_tokens)
        o_rates.append(tok / sec)
    d, o = statistics.median(d_rates), statistics.median(o_rates)
    print(f"cores={os.cpu_count()} prompts={len(PROMPTS)} max_tokens={args.max_tokens} repeat={args.repeat}")
    print("| path | tokens/s (median) |\n|---|---|")
    print(f"| llama-cpp-python direct | {d:.1f} |\n| synthcodec embedded backend | {o:.1f} |")
    print(f"ratio ours/direct = {o / d:.3f}")


if __name__ == "__main__":
    main()
