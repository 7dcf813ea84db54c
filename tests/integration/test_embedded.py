"""The embedded llama.cpp model on a few real rows, and the HTTP backend against a real
OpenAI-compatible server (`python -m llama_cpp.server`) that the test starts on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from synthcodec.llm import Request
from synthcodec.llm.client import LLMClient
from tests.helpers import read_jsonl, synthcodec, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("require_embedded")]


class Capital(BaseModel):
    country: str
    capital: str


def test_embedded_backend_answers_and_follows_a_schema() -> None:
    from synthcodec.llm.llamacpp import LlamaCppBackend

    client = LLMClient(LlamaCppBackend())

    async def go() -> tuple[str, Capital]:
        plain = await client.complete(Request.chat("Which city is the capital of France? Answer with the city name.",
                                                   max_tokens=32),
                                      allow_truncated=True)
        structured = await client.structured(
            Request.chat("Give the capital of France as JSON.", max_tokens=64), Capital)
        await client.aclose()
        return plain.text, structured

    text, capital = asyncio.run(go())
    assert "Paris" in text
    assert isinstance(capital, Capital) and capital.capital
    assert client.stats.completion_tokens > 0


def test_complete_on_real_rows_then_rerun_sends_nothing(tmp_path: Path, shared_data: Path) -> None:
    rows = [json.loads(line) for line in
            (shared_data / "bench" / "vicuna_test_set.jsonl").read_text().splitlines()[:3]]
    src = write_jsonl(tmp_path / "q.jsonl", rows)
    args = ("complete", str(src), "--field", "prompt=text", "--max-tokens", "48", "-o",
            str(tmp_path / "run"))
    first = synthcodec(*args, timeout=600)
    assert first.returncode == 0, first.stderr
    out = read_jsonl(tmp_path / "run" / "output.jsonl") + read_jsonl(tmp_path / "run" / "failed.jsonl")
    assert sorted(r["question_id"] for r in out) == [1, 2, 3]
    second = synthcodec(*args, timeout=600)
    assert "requests sent 0" in second.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def llama_server(tmp_path: Path) -> Iterator[str]:
    """A real OpenAI-compatible server on loopback, serving the embedded GGUF."""
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    from synthcodec.llm.llamacpp import default_gguf

    port = _free_port()
    # The server logs a lot; a pipe nobody reads would fill up and stall it, so use a file.
    log = open(tmp_path / "llama_server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf()),
         "--host", "127.0.0.1", "--port", str(port), "--model_alias", "smollm2",
         "--n_ctx", "2048"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (tmp_path / "llama_server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError("llama_cpp.server did not start: " + tail)
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_http_backend_against_a_real_llama_cpp_server(tmp_path: Path, llama_server: str) -> None:
    src = write_jsonl(tmp_path / "q.jsonl", [
        {"prompt": "Which city is the capital of France? Answer with the city name."},
        {"prompt": "Name a primary colour."},
    ])
    result = synthcodec("complete", str(src), "-m", f"smollm2@{llama_server}", "--max-tokens",
                        "32", "-o", str(tmp_path / "run"), timeout=600)
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(tmp_path / "run" / "output.jsonl") + read_jsonl(tmp_path / "run" / "failed.jsonl")
    assert len(rows) == 2
    assert any("Paris" in r.get("response", "") for r in rows)

    from synthcodec.llm.openai_http import OpenAIHTTPBackend

    client = LLMClient(OpenAIHTTPBackend("smollm2", llama_server))

    async def go() -> Capital:
        try:
            return await client.structured(
                Request.chat("Give the capital of France as JSON.", max_tokens=64), Capital)
        finally:
            await client.aclose()

    assert isinstance(asyncio.run(go()), Capital)
