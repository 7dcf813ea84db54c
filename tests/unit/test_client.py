"""LLMClient: the one retry loop, cache, in-flight limit and rate pacer, structured output."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from synthcodec.cache import RequestCache, request_key
from synthcodec.llm import Completion, FakeBackend, PermanentError, Request, TransientError
from synthcodec.llm.client import FatalModelError, LLMClient, RecordFailed, RetryPolicy
from synthcodec.llm.pacing import Pacer
from synthcodec.llm.ratelimit import (
    LimitState,
    RateLimitInfo,
    limit_kind,
    parse_duration,
    parse_ratelimit_headers,
    retry_after,
)
from tests.mock_server import ServerRateLimit

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


def test_structured_output_cut_off_fails_at_once_without_a_reask() -> None:
    fake = FakeBackend([Completion('{"score": 4, "why": "bec', finish_reason="length")])
    with pytest.raises(RecordFailed, match="finish_reason=length") as failed:
        run(LLMClient(fake).structured(Request.chat("rate", max_tokens=8), Answer, reasks=2))
    assert "max_tokens=8" in str(failed.value) and failed.value.repeats  # temperature 0
    assert len(fake.calls) == 1  # it would be cut off again


def test_structured_output_gives_up_with_a_reason() -> None:
    fake = FakeBackend(["not json"])
    with pytest.raises(RecordFailed, match="no valid structured output after 3 tries"):
        run(LLMClient(fake).structured(Request.chat("rate"), Answer, reasks=2))
    assert len(fake.calls) == 3


# ---- pacing that learns the server's rate limit ------------------------------------------


class BucketServer:
    """A rate-limited server as a FakeBackend reply function: the mock server's own limit
    (`ServerRateLimit`: `rate` per second, bursts of `burst`); no token -> 429 at once with
    `Retry-After` (W3's server)."""

    def __init__(self, rate: float, burst: float, retry_after: float | None = 1.0,
                 latency: float = 0.01) -> None:
        self.bucket = ServerRateLimit(rate, burst)
        self.retry_after, self.latency = retry_after, latency
        self.admitted = self.limited = 0

    async def __call__(self, request: Request) -> str | TransientError:
        if self.bucket.take() > 0:
            self.limited += 1
            return TransientError("HTTP 429", status=429, retry_after=self.retry_after)
        self.admitted += 1
        await asyncio.sleep(self.latency)
        return "ok"


def test_pacer_learns_the_rate_and_stops_hammering() -> None:
    # W3 in small: limit 20/s (bucket 20), Retry-After: 1 in whole seconds, 32 in flight.
    server = BucketServer(rate=20, burst=20)
    client = LLMClient(FakeBackend(server), max_in_flight=32, retry=FAST)

    async def many() -> list[Completion]:
        return await asyncio.gather(*(client.complete(Request.chat(f"q{i}")) for i in range(60)))

    results = run(many())
    assert [r.text for r in results] == ["ok"] * 60  # nothing lost
    # The first burst of 32 meets a bucket of 20: 12 429s. After that the learned rate keeps
    # the 429s to a handful (halving requests in flight instead kept hammering: 3 per record).
    assert server.limited <= 12 + 4, server.limited
    assert client.stats.requests <= 1.3 * 60
    assert client.pacer.rate is not None and 10 <= client.pacer.rate <= 25


def test_unlimited_server_is_never_paced() -> None:
    client = LLMClient(FakeBackend(["ok"]), max_in_flight=8)

    async def many() -> None:
        await asyncio.gather(*(client.complete(Request.chat(str(i))) for i in range(50)))

    run(many())
    assert client.pacer.rate is None and client.pacer.cuts == 0


def test_a_record_is_not_given_up_on_429s_while_others_get_through() -> None:
    stubborn = {"left": 25}  # more 429s in a row than max_rate_limited allows

    async def reply(request: Request) -> str | TransientError:
        if request.messages[-1]["content"] == "stubborn" and stubborn["left"] > 0:
            stubborn["left"] -= 1
            return TransientError("HTTP 429", status=429, retry_after=0.001)
        await asyncio.sleep(0.002)
        return "ok"

    client = LLMClient(FakeBackend(reply), max_in_flight=4,
                       retry=RetryPolicy(max_rate_limited=5, base_delay=0.001))

    async def others() -> None:
        for i in range(400):
            await client.complete(Request.chat(f"other {i}"))
            if stubborn["left"] == 0:
                return

    async def both() -> Completion:
        done, _ = await asyncio.gather(client.complete(Request.chat("stubborn")), others())
        return done

    assert run(both()).text == "ok"
    assert client.stats.rate_limited == 25


def test_429s_with_no_progress_anywhere_give_up() -> None:
    fake = FakeBackend([TransientError("HTTP 429", status=429, retry_after=0.001)])
    client = LLMClient(fake, retry=RetryPolicy(max_rate_limited=4, base_delay=0.001))
    with pytest.raises(RecordFailed, match="4 rate-limited attempts in a row with no request"):
        run(client.complete(Request.chat("hi")))
    assert len(fake.calls) == 4


def test_a_429_without_retry_after_holds_for_the_clients_retry_policy() -> None:
    fake = FakeBackend([TransientError("HTTP 429", status=429), "ok"])
    slow = LLMClient(fake, retry=RetryPolicy(base_delay=0.4, max_delay=0.4))
    started = time.monotonic()
    assert run(slow.complete(Request.chat("hi"))).text == "ok"
    assert time.monotonic() - started >= 0.39  # held for backoff(0) = base_delay
    fast = LLMClient(FakeBackend([TransientError("HTTP 429", status=429), "ok"]), retry=FAST)
    started = time.monotonic()
    assert run(fast.complete(Request.chat("hi"))).text == "ok"
    assert time.monotonic() - started < 0.3  # not a fixed 0.5 s of the pacer's own


def test_a_429_holds_every_sender_until_the_retry_after_moment() -> None:
    pacer = Pacer(backoff=RetryPolicy().backoff)

    async def scenario() -> float:
        for _ in range(3):  # two got through, one did not
            epoch = await pacer.acquire(10)
        pacer.on_rate_limited(epoch, 10, TransientError("429", status=429, retry_after=0.3))
        started = time.monotonic()
        await pacer.acquire(10)  # another sender: waits for the hold too
        return time.monotonic() - started

    assert run(scenario()) >= 0.29
    assert pacer.rate == pytest.approx(2 / 0.3 * Pacer.MARGIN, rel=0.05)


def test_pacer_takes_the_rate_from_x_ratelimit_headers_on_a_429() -> None:
    pacer = Pacer(backoff=RetryPolicy().backoff)
    info = RateLimitInfo(requests=LimitState(limit=120, remaining=0, reset=12.0))

    async def scenario() -> None:
        epoch = await pacer.acquire(1)
        pacer.on_rate_limited(epoch, 1, TransientError("429", status=429, retry_after=0.01,
                                                       ratelimit=info))
        await pacer.acquire(1)

    run(scenario())
    assert pacer.rate == pytest.approx(10 * Pacer.MARGIN)  # 120 used, full again in 12 s
    assert pacer.tokens.rate is None


def test_a_tpm_429_backs_off_the_token_rate_not_the_request_rate() -> None:
    pacer = Pacer(backoff=RetryPolicy().backoff)

    async def scenario() -> None:
        for _ in range(5):
            epoch = await pacer.acquire(1000)
        pacer.on_rate_limited(epoch, 1000, TransientError(
            "429", status=429, retry_after=0.01, limit_kind="tokens"))
        await pacer.acquire(1000)

    run(scenario())
    assert pacer.requests.rate is None
    assert pacer.tokens.rate is not None and pacer.tokens.rate < 4000 / 0.01


def test_low_x_ratelimit_remaining_paces_before_any_429() -> None:
    low = RateLimitInfo(requests=LimitState(limit=60, remaining=1, reset=59.0))
    fake = FakeBackend([Completion("ok", extra={"ratelimit": low})])
    client = LLMClient(fake)
    run(client.complete(Request.chat("hi")))
    assert client.pacer.rate == pytest.approx(1.0)  # 59 used, full again in 59 s: 1/s
    assert client.stats.rate_limited == 0


def test_the_rate_creeps_back_up_when_429s_stop() -> None:
    pacer = Pacer(backoff=RetryPolicy().backoff)
    pacer.requests.set_rate(10.0)
    pacer._last_limit["requests"] = 10.0
    pacer._resumed = time.monotonic() - 10  # cooldown over
    for _ in range(5):
        pacer._last_creep = time.monotonic() - 1.0
        pacer._creep()
    assert 10 * 1.02 < pacer.rate < 10 * 1.03  # 0.5%/s near the last limit
    pacer.requests.set_rate(12.0)  # well above it: faster
    pacer._last_creep = time.monotonic() - 1.0
    pacer._creep()
    assert pacer.rate == pytest.approx(12 * 1.05, rel=1e-3)
    pacer.requests.set_rate(170.0)  # 16 x the last limit: pacing ends
    pacer._last_creep = time.monotonic() - 1.0
    pacer._creep()
    assert pacer.rate is None


def test_user_rpm_is_a_ceiling_the_pacer_never_exceeds() -> None:
    pacer = Pacer(rpm=600, backoff=RetryPolicy().backoff)
    assert pacer.rate == 10
    pacer._last_limit["requests"] = 1.0
    pacer._resumed = time.monotonic() - 10
    pacer._last_creep = time.monotonic() - 1.0
    pacer._creep()
    assert pacer.rate == 10


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5),
    ("7.66s", 7.66), ("", None), ("soon", None), ("1x", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    got = parse_duration(text)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_ratelimit_headers() -> None:
    info = parse_ratelimit_headers({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s",
    })
    assert info is not None
    assert info.requests == LimitState(500, 499, 0.12)
    assert info.tokens == LimitState(30000, 0, 360.0)
    assert info.tokens.refill_rate() == pytest.approx(30000 / 360)
    assert info.tokens.low and not info.requests.low
    assert parse_ratelimit_headers({"content-type": "application/json"}) is None


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after({"retry-after-ms": "250", "Retry-After": "1"}) == 0.25
    assert retry_after({"Retry-After": "2"}) == 2.0
    assert retry_after({}) is None


def test_which_limit_a_429_is_about() -> None:
    tpm = b'{"error": {"message": "Rate limit reached for gpt-4o on tokens per min (TPM): ' \
          b'Limit 30000, Used 29000, Requested 2000.", "type": "tokens", ' \
          b'"code": "rate_limit_exceeded"}}'
    rpm = b'{"error": {"message": "Rate limit reached on requests per min (RPM)", ' \
          b'"type": "requests", "code": "rate_limit_exceeded"}}'
    assert limit_kind(tpm) == "tokens"
    assert limit_kind(rpm) == "requests"
    assert limit_kind(b"slow down: TPM exceeded") == "tokens"
    assert limit_kind(b"<html>429</html>") == "requests"


def test_identical_requests_at_once_are_sent_once(tmp_path: Path) -> None:
    # Both orders of an identical pair, or two records asking the same: the cache lookups of
    # one loop turn are answered together (all misses), yet only one request goes out and
    # both callers get its answer. A different request is still sent.
    backend = FakeBackend(lambda r: "answer to " + r.messages[-1]["content"])
    client = LLMClient(backend, cache=RequestCache(tmp_path / "c.sqlite"))

    async def ask() -> list[str]:
        same = Request.chat("same question")
        done = await asyncio.gather(client.complete(same), client.complete(same),
                                    client.complete(Request.chat("other")))
        return [c.text for c in done]

    assert run(ask()) == ["answer to same question"] * 2 + ["answer to other"]
    assert [r.messages[-1]["content"] for r in backend.calls] == ["same question", "other"]
    assert client.stats.requests == 2 and client.stats.cache_hits == 1
