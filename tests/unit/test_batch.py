"""--batch: provider batch APIs against the mock server (127.0.0.1 only).

The sender on its own (in-process server): passes, polls, expired and partly failed
batches, the ledger's resume; then the CLI as a user runs it: kill -9 while polling,
both-order judging, the budget at batch prices, refusals.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from synthcodec.cache import RequestCache, request_key
from synthcodec.llm.base import Request
from synthcodec.llm.batch import BatchLedger, BatchSender, BatchSettings
from synthcodec.llm.client import LLMClient, RecordFailed, Stats
from synthcodec.llm.openai_http import OpenAIHTTPBackend
from synthcodec.prices import PriceTable
from tests.helpers import popen_synthcodec, read_jsonl, synthcodec, write_jsonl
from tests.mock_server import MockServer, serve_in_subprocess

FAST = BatchSettings(poll=0.02, settle=0.05)


def _client(base_url: str, run: Path, model: str = "mock-model",
            settings: BatchSettings = FAST) -> LLMClient:
    backend = OpenAIHTTPBackend(model, base_url)
    stats = Stats()
    cache = RequestCache(run / "cache.sqlite")
    sender = BatchSender(backend, cache, BatchLedger(run, stats), settings)
    return LLMClient(backend, cache=cache, max_in_flight=10_000, stats=stats, batch=sender)


async def _ask_all(client: LLMClient, n: int, *, prefix: str = "q") -> list[str]:
    try:
        done = await asyncio.gather(*(client.complete(Request.chat(f"{prefix} {i}"))
                                      for i in range(n)))
        return [c.text for c in done]
    finally:
        await client.aclose()
        assert client.cache is not None
        client.cache.close()


def _serve(coro_fn: Any, **server: Any) -> tuple[Any, dict[str, Any]]:
    async def main() -> tuple[Any, dict[str, Any]]:
        async with MockServer(**server) as mock:
            assert mock.base_url is not None
            result = await coro_fn(mock.base_url)
            return result, mock.stats()
    return asyncio.run(main())


def test_a_batch_in_progress_for_several_polls_answers_everything_once(tmp_path: Path) -> None:
    async def body(url: str) -> tuple[list[str], list[str]]:
        first = await _ask_all(_client(url, tmp_path), 12)
        # then everything is in the cache: the same requests again send nothing
        return first, await _ask_all(_client(url, tmp_path), 12)

    (texts, again), stats = _serve(body, batch_polls=4)
    assert texts == again == [f"echo: q {i}" for i in range(12)]
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1
    assert stats["batch_polls"] >= 5 and stats["batch_requests"] == 12
    assert stats["by_status"] == {}  # no request went one by one
    ledger = [json.loads(line) for line in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert [e["op"] for e in ledger] == ["file", "batch", "done"]


def test_failed_polls_wait_longer_then_polling_is_back_on_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcodec.llm import batch as batch_module
    from synthcodec.llm.base import TransientError

    replies = [TransientError("503"), TransientError("503")] + [
        json.dumps({"status": "in_progress"})] * 3 + [json.dumps({"status": "completed"})]

    class Backend:
        identity = "m@http://127.0.0.1:9/v1"

        async def api(self, method: str, path: str, **kw: Any) -> bytes:
            reply = replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply.encode()

    waits: list[float] = []

    class Clock:  # batch.py's asyncio, with sleep recorded instead of slept
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        async def sleep(self, seconds: float) -> None:
            waits.append(seconds)

    monkeypatch.setattr(batch_module, "asyncio", Clock())
    cache = RequestCache(tmp_path / "cache.sqlite")
    sender = BatchSender(Backend(), cache, BatchLedger(tmp_path, Stats()), BatchSettings(poll=1))
    asyncio.run(sender._poll("batch_1", []))
    cache.close()
    assert waits == [2, 4, 1, 1, 1]  # doubled while polls fail, then the regular interval


def test_identical_requests_share_one_line(tmp_path: Path) -> None:
    async def body(url: str) -> list[str]:
        client = _client(url, tmp_path)
        try:
            done = await asyncio.gather(*(client.complete(Request.chat("same")) for _ in range(5)))
            return [c.text for c in done]
        finally:
            await client.aclose()
    texts, stats = _serve(body)
    assert texts == ["echo: same"] * 5 and stats["batch_requests"] == 1


def test_expired_batch_resubmits_only_the_unanswered_requests(tmp_path: Path) -> None:
    texts, stats = _serve(lambda url: _ask_all(_client(url, tmp_path), 10), batch_expire_first=1)
    assert texts == [f"echo: q {i}" for i in range(10)]
    assert stats["batches_expired"] == 1 and stats["batches_created"] == 2
    assert stats["batch_requests"] == 10  # 5 answered before it expired + the other 5 again


def test_partly_failed_batch_resubmits_only_the_failed_requests(tmp_path: Path) -> None:
    texts, stats = _serve(lambda url: _ask_all(_client(url, tmp_path), 30), batch_fail_rate=0.3)
    assert texts == [f"echo: q {i}" for i in range(30)]
    assert stats["batch_requests_failed"] > 0 and stats["batches_created"] >= 2
    # every request answered exactly once: only failed ones went into a later batch
    assert stats["batch_requests"] - stats["batch_requests_failed"] == 30


def test_a_4xx_inside_a_batch_fails_the_record_with_the_reason_and_is_not_resent(
        tmp_path: Path) -> None:
    async def body(url: str) -> list[str]:
        client = _client(url, tmp_path, model="bad-request")
        try:
            results = await asyncio.gather(
                *(client.complete(Request.chat(f"q {i}")) for i in range(3)),
                return_exceptions=True)
        finally:
            await client.aclose()
        assert all(isinstance(r, RecordFailed) for r in results)
        return [str(r) for r in results]
    reasons, stats = _serve(body)
    assert all("HTTP 400" in r and "batch_mock_1" in r for r in reasons)
    assert stats["batch_requests"] == 3 and stats["batches_created"] == 1


def test_a_new_process_waits_on_the_ledger_batch_instead_of_submitting_again(
        tmp_path: Path) -> None:
    async def body(url: str) -> list[str]:
        first = _client(url, tmp_path, settings=BatchSettings(poll=0.05, settle=0.02))
        tasks = [asyncio.ensure_future(first.complete(Request.chat(f"q {i}"))) for i in range(4)]
        while "batch_mock_1" not in _ledger_text(tmp_path):
            await asyncio.sleep(0.01)
        for t in tasks:  # the process "dies" while polling
            t.cancel()
        await first.aclose()
        assert first.cache is not None
        first.cache.close()
        return await _ask_all(_client(url, tmp_path), 4)
    texts, stats = _serve(body, batch_polls=5)
    assert texts == [f"echo: q {i}" for i in range(4)]
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1


def test_an_upload_whose_batch_line_was_lost_is_adopted_not_submitted_again(
        tmp_path: Path) -> None:
    """The window between creating a batch and writing its line: the resume finds the
    provider's batch by its input file id."""
    async def body(url: str) -> list[str]:
        client = _client(url, tmp_path)
        requests = [Request.chat(f"q {i}") for i in range(3)]
        keys = [request_key(client.identity, r) for r in requests]
        backend = client.backend
        lines = b"".join(json.dumps({"custom_id": k, "method": "POST",
                                     "url": "/v1/chat/completions",
                                     "body": backend.body(r)}).encode() + b"\n"
                         for k, r in zip(keys, requests))
        file_id = json.loads(await backend.api("POST", "files", upload=lines))["id"]
        await backend.api("POST", "batches", json_body={
            "input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"})
        client.batch.ledger.append({"op": "file", "model": client.identity,
                                    "file_id": file_id, "custom_ids": keys})
        try:
            done = await asyncio.gather(*(client.complete(r) for r in requests))
        finally:
            await client.aclose()
        return [c.text for c in done]
    texts, stats = _serve(body)
    assert texts == ["echo: q 0", "echo: q 1", "echo: q 2"]
    assert stats["batches_created"] == 1 and stats["batch_requests"] == 3


def test_an_entry_after_a_line_cut_by_a_kill_is_kept(tmp_path: Path) -> None:
    ok = {"op": "batch", "model": "m", "file_id": "file-1", "batch_id": "batch_1"}
    (tmp_path / "batches.jsonl").write_text(json.dumps(ok) + '\n{"op": "file", "mod')
    BatchLedger(tmp_path, Stats()).append({"op": "done", "batch_id": "batch_1"})
    again = BatchLedger(tmp_path, Stats())
    assert [e["op"] for e in again.entries] == ["batch", "done"]
    assert again.unfinished("m") == ({}, {})  # the batch is done: nothing to poll


def _ledger_text(run: Path) -> str:
    path = run / "batches.jsonl"
    return path.read_text() if path.exists() else ""


# ----------------------------------------------------------------------- the CLI


def _stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as resp:
        return json.loads(resp.read())


def _input(tmp_path: Path, n: int) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"}
                                               for i in range(n)])


def test_kill_9_while_polling_resumes_the_same_batch_with_no_new_submission(
        tmp_path: Path) -> None:
    src, run = _input(tmp_path, 10), tmp_path / "run"
    args = ["complete", str(src), "-o", str(run), "--batch", "--batch-poll", "0.05", "-q"]
    with serve_in_subprocess(batch_polls=25) as (_, url):
        proc = popen_synthcodec(*args, "-m", f"mock-model@{url}")
        deadline = time.monotonic() + 60
        while '"op": "batch"' not in _ledger_text(run):
            assert proc.poll() is None and time.monotonic() < deadline, "no batch id written"
            time.sleep(0.02)
        time.sleep(0.2)  # polling now
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        assert _stats(url)["batch_polls"] < 25  # killed before the batch was done
        again = synthcodec(*args, "-m", f"mock-model@{url}")
        stats = _stats(url)
        plain = synthcodec("complete", str(src), "-o", str(tmp_path / "plain"), "-q",
                           "-m", f"mock-model@{url}", "--no-cache")
    assert again.returncode == 0, again.stderr
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1
    assert stats["batch_requests"] == 10 and stats["by_status"] == {}
    assert plain.returncode == 0, plain.stderr
    assert read_jsonl(run / "output.jsonl") == read_jsonl(tmp_path / "plain" / "output.jsonl")
    ledger = [json.loads(line) for line in _ledger_text(run).splitlines()]
    assert [e["op"] for e in ledger] == ["file", "batch", "done"]


def _pairs(tmp_path: Path, n: int) -> tuple[Path, Path]:
    def answers(name: str, model: str) -> Path:
        return write_jsonl(tmp_path / name, [
            {"question_id": i, "question": f"Question {i}?", "category": "math",
             "answer": f"{model} says {i}", "model": model, "bench": "vicuna",
             "truncated": False} for i in range(n)])
    return answers("a.jsonl", "model-a"), answers("b.jsonl", "model-b")


def test_both_order_judging_goes_in_one_pass_and_gives_the_same_verdicts(
        tmp_path: Path) -> None:
    a, b = _pairs(tmp_path, 6)
    with serve_in_subprocess(batch_polls=2) as (_, url):
        batch = synthcodec("compare", str(a), str(b), "--judge", f"mock-model@{url}",
                           "--judge-json", "-o", str(tmp_path / "batch"), "-q", "--batch",
                           "--batch-poll", "0.05")
        stats = _stats(url)
        plain = synthcodec("compare", str(a), str(b), "--judge", f"mock-model@{url}",
                           "--judge-json", "-o", str(tmp_path / "plain"), "-q", "--no-cache")
    assert batch.returncode == 0, batch.stderr
    assert plain.returncode == 0, plain.stderr
    assert stats["batches_created"] == 1 and stats["batch_requests"] == 12  # 6 pairs x 2 orders
    assert "requests sent 12 in 1 batch |" in batch.stderr
    assert (read_jsonl(tmp_path / "batch" / "output.jsonl")
            == read_jsonl(tmp_path / "plain" / "output.jsonl"))


def test_budget_at_batch_prices_stops_and_a_larger_budget_finishes(tmp_path: Path) -> None:
    n = 20
    src = _input(tmp_path, n)
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."m"]\ninput = 2000\noutput = 2000\n'
                      'batch_input = 1000\nbatch_output = 1000\n')
    assert PriceTable.load(prices).entries["m"].for_batch().input == 1000

    def run(out: str, *extra: str) -> Any:
        return synthcodec("complete", str(src), "-o", str(tmp_path / out), "-m", f"m@{url}",
                          "--prices", str(prices), "--max-tokens", "32", *extra)

    with serve_in_subprocess() as (_, url):
        plain = run("plain", "-q", "--no-cache")
        first = run("run", "--batch", "--batch-poll", "0.05", "--budget", "0.5")
        created = _stats(url)["batches_created"]
        m1 = json.loads((tmp_path / "run" / "manifest.json").read_text())
        second = run("run", "--batch", "--batch-poll", "0.05", "--budget", "100")
    assert plain.returncode == 0, plain.stderr
    assert first.returncode == 4, first.stderr
    assert 0 < m1["counts"]["ok"] < n and m1["usage_total"]["usd"] <= 0.5
    assert created == 1 and "stopped before the --budget cap" in first.stderr
    assert "in 1 batch" in first.stderr and "projected whole run" in first.stderr
    progress = [line for line in first.stderr.splitlines() if line.startswith("complete")][-1]
    assert "| $0." in progress and "at end" in progress
    model = next(iter(m1["cost"]["models"].values()))
    assert model["price_per_1m"]["input"] == 1000 and "(batch)" in model["price_per_1m"]["source"]
    assert second.returncode == 0, second.stderr
    assert read_jsonl(tmp_path / "run" / "output.jsonl") == read_jsonl(
        tmp_path / "plain" / "output.jsonl")
    whole = json.loads((tmp_path / "run" / "manifest.json").read_text())["usage_total"]
    full = json.loads((tmp_path / "plain" / "manifest.json").read_text())["usage_total"]
    assert whole["requests"] == n  # each record sent once over both runs
    assert whole["usd"] == pytest.approx(full["usd"] / 2, rel=1e-6)  # at half the price


@pytest.mark.parametrize("model, extra, message", [
    ("fake:echo", [], "--batch needs an OpenAI-compatible server"),
    ("m@http://127.0.0.1:9/v1,http://127.0.0.1:10/v1", [], "with one URL"),
    ("m@http://127.0.0.1:9/v1", ["--no-cache"], "drop --no-cache"),
])
def test_batch_refuses_what_it_cannot_do_before_anything_is_written(
        tmp_path: Path, model: str, extra: list[str], message: str) -> None:
    src, run = _input(tmp_path, 2), tmp_path / "run"
    result = synthcodec("complete", str(src), "-m", model, "-o", str(run), "--batch", *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not run.exists()


def test_python_api_takes_batch_true(tmp_path: Path) -> None:
    import synthcodec

    rows = [{"prompt": f"question {i}"} for i in range(5)]
    with serve_in_subprocess() as (_, url):
        result = synthcodec.complete(rows, model=f"mock-model@{url}", run_dir=tmp_path / "r",
                                     batch=True, batch_poll=0.05)
        stats = _stats(url)
    assert [r["response"] for r in result.rows] == [f"echo: question {i}" for i in range(5)]
    assert stats["batches_created"] == 1 and stats["by_status"] == {}


def test_generate_loop_in_batch_mode_keeps_the_same_pairs(tmp_path: Path) -> None:
    """CodecLM's multi-call steps (encode, decode, rubrics, the evolve loop with both-order
    judging) in the scripted world of benchmarks/bench_generate.py, once per mode."""
    import threading

    from benchmarks.bench_generate import reply, seeds
    from synthcodec.codeclm import CodecConfig, generate
    from synthcodec.session import RunOptions

    def responder(body: dict[str, Any]) -> str:
        return reply(body["messages"], isinstance(body.get("response_format"), dict),
                     body.get("model", ""))

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = MockServer(responder=responder, batch_polls=1)
    url = asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    seed_file = write_jsonl(tmp_path / "seeds.jsonl", seeds(6))
    try:
        for mode in ("plain", "batch"):
            options = RunOptions(progress=False, cache_path=str(tmp_path / f"{mode}.sqlite"),
                                 batch=mode == "batch", batch_poll=0.02)
            result = generate(seeds=str(seed_file), run_dir=tmp_path / mode,
                              strong=f"strong@{url}", target=f"target@{url}", n=1000,
                              cfg=CodecConfig(pool_size=6), options=options)
            assert result.exit_code == 0
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
    plain, batch = (read_jsonl(tmp_path / m / "output.jsonl") for m in ("plain", "batch"))
    assert plain and batch == plain
    stats = server.stats()
    assert stats["batches_created"] >= 4 and stats["batch_requests_failed"] == 0
