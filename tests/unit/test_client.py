"""LLMClient: the one retry loop, cache, adaptive concurrency, structured output."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from synthcodec.cache import RequestCache, request_key
from synthcodec.llm import Completion, FakeBackend, PermanentError, Request, TransientError
from synthcodec.llm.client import FatalModelError, LLMClient, RecordFailed, RetryPolicy

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)


def run(coro):
    return asyncio.run(coro)


def test_transient_errors_are_retried_then_succeed() -> None:
    fake = FakeBackend([TransientError("503", status=503), TransientError("timeout"), "fine"])
    client = LLMClient(fake, retry=FAST)
    completion = run(client.complete(Request.chat("hi")))
    assert completion.text == "fine"
    assert len(fake.calls) == 3
    assert client.stats.retries == 2 and client.stats.requests == 3


@pytest.mark.parametrize("status", [400, 422])
def test_other_4xx_are_not_retried(status: int) -> None:
    fake = FakeBackend([PermanentError("bad", status=status), "never"])
    client = LLMClient(fake, retry=FAST)
    with pytest.raises(RecordFailed, match="bad"):
        run(client.complete(Request.chat("hi")))
    assert len(fake.calls) == 1


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_and_unknown_model_stop_the_run(status: int) -> None:
    client = LLMClient(FakeBackend([PermanentError("no", status=status)]), retry=FAST)
    with pytest.raises(FatalModelError):
        run(client.complete(Request.chat("hi")))


def test_retries_are_bounded() -> None:
    fake = FakeBackend([TransientError("500", status=500)])
    client = LLMClient(fake, retry=RetryPolicy(max_attempts=3, base_delay=0.001))
    with pytest.raises(RecordFailed, match="gave up after 3 attempts"):
        run(client.complete(Request.chat("hi")))
    assert len(fake.calls) == 3


def test_retry_after_is_honoured() -> None:
    fake = FakeBackend([TransientError("429", status=429, retry_after=0.3), "ok"])
    client = LLMClient(fake, retry=FAST)
    started = time.monotonic()
    assert run(client.complete(Request.chat("hi"))).text == "ok"
    assert time.monotonic() - started >= 0.3
    assert client.stats.rate_limited == 1


def test_429_halves_concurrency_and_success_restores_it() -> None:
    client = LLMClient(FakeBackend(["ok"]), max_in_flight=64)
    client.limit.on_rate_limited()
    assert client.limit.limit == 32
    client.limit.on_rate_limited()  # same burst: not cut again
    assert client.limit.limit == 32
    for _ in range(2000):
        client.limit.on_success()
    assert client.limit.limit == 64


def test_in_flight_limit_is_respected() -> None:
    in_flight = peak = 0

    async def slow(request: Request) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return "x"

    client = LLMClient(FakeBackend(slow), max_in_flight=5)

    async def many() -> None:
        await asyncio.gather(*(client.complete(Request.chat(str(i))) for i in range(40)))

    run(many())
    assert peak == 5


def test_cache_serves_repeats_and_distinguishes_samples(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "c.sqlite")
    fake = FakeBackend(lambda r: f"sample {r.sample}")
    client = LLMClient(fake, cache=cache)
    a = run(client.complete(Request.chat("hi", temperature=0.7, sample=0)))
    b = run(client.complete(Request.chat("hi", temperature=0.7, sample=1)))
    again = run(client.complete(Request.chat("hi", temperature=0.7, sample=0)))
    assert (a.text, b.text, again.text) == ("sample 0", "sample 1", "sample 0")
    assert len(fake.calls) == 2 and client.stats.cache_hits == 1 and again.cached
    cache.close()
    # persisted: a new process (new cache object) sends nothing
    fake2 = FakeBackend(["never"])
    client2 = LLMClient(fake2, cache=RequestCache(tmp_path / "c.sqlite"))
    assert run(client2.complete(Request.chat("hi", temperature=0.7, sample=1))).text == "sample 1"
    assert fake2.calls == []


def test_cache_key_covers_model_params_and_schema() -> None:
    base = Request.chat("hi")
    keys = {
        request_key("m1", base),
        request_key("m2", base),
        request_key("m1", Request.chat("hi", temperature=0.5)),
        request_key("m1", Request.chat("hi", max_tokens=9)),
        request_key("m1", Request.chat("hi", system="be brief")),
        request_key("m1", Request.chat("hi", json_schema={"type": "object"})),
    }
    assert len(keys) == 6
    assert request_key("m1", base) == request_key("m1", Request.chat("hi"))


def test_truncated_output_is_a_failure() -> None:
    fake = FakeBackend([Completion("half an ans", finish_reason="length")])
    with pytest.raises(RecordFailed, match="truncated"):
        run(LLMClient(fake).complete(Request.chat("hi", max_tokens=4)))


class Answer(BaseModel):
    score: float
    why: str


def test_structured_output_reasks_with_the_error_then_validates() -> None:
    fake = FakeBackend(['{"score": "high"}', '```json\n{"score": 4, "why": "ok"}\n```'])
    result = run(LLMClient(fake).structured(Request.chat("rate"), Answer))
    assert result == Answer(score=4, why="ok")
    assert fake.calls[0].json_schema == Answer.model_json_schema()
    second = fake.calls[1].messages
    assert second[-2] == {"role": "assistant", "content": '{"score": "high"}'}
    assert "not valid" in second[-1]["content"]


def test_structured_output_gives_up_with_a_reason() -> None:
    fake = FakeBackend(["not json"])
    with pytest.raises(RecordFailed, match="no valid structured output after 3 tries"):
        run(LLMClient(fake).structured(Request.chat("rate"), Answer, reasks=2))
    assert len(fake.calls) == 3
