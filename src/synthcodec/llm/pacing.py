"""How fast to send to one endpoint: `AdaptiveLimit` (requests in flight) and the `Pacer`
(request and token rates learned from 429s, `Retry-After` and `x-ratelimit-*`, paced with
`TokenBucket`s; `--rpm`/`--tpm` are its ceilings). `LLMClient` gives each endpoint one of
each."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synthcodec.llm.base import TransientError

__all__ = ["AdaptiveLimit", "Pacer", "TokenBucket"]


class AdaptiveLimit:
    """The requests-in-flight cap of one endpoint (a semaphore). Rate limits are the Pacer's
    job: cutting requests in flight after a 429 does not help when even one short request at a
    time exceeds the server's rate, and it starves slow servers of throughput. What adapts is
    failure: an endpoint back from the bench starts at one request in flight and doubles with
    each success up to `maximum`.

    Our own semaphore rather than asyncio.Semaphore because the limit moves (`cut`, `grow`).
    It takes a free slot without a lock or an await, and `release` hands its slot straight
    to the first waiter (FIFO): the asyncio.Condition it replaces took its lock twice and
    created two coroutines per request (measured: 55 -> 30 us per acquire/release round
    trip with 20,000 tasks; docs/benchmarks.md, issue 19).
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def cut(self) -> None:
        """Down to one request in flight: an endpoint back from the bench is on probation."""
        self.limit = 1

    def grow(self) -> None:
        """After a success: double back up to the maximum (slow start)."""
        if self.limit >= self.maximum:
            return
        self.limit = min(self.maximum, self.limit * 2)
        self._wake()

    def _wake(self) -> None:
        """Give free slots to waiters, first come first served (the slot is theirs on waking)."""
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)


class TokenBucket:
    """Paces takers to `rate` units per second with bursts up to `capacity`.

    `rate=None` means unpaced (take returns at once). `hold_until` (a time.monotonic()
    moment) stops every taker until then, e.g. a server's Retry-After; `on_resume` runs once
    when the first taker passes a hold. Used with a fixed rate for --rpm/--tpm and with a
    learned one by the Pacer. `amount` may exceed the capacity (it then waits for a full one).
    """

    def __init__(self, rate: float | None = None, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate or 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.hold_until = 0.0
        self.on_resume: Callable[[], None] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def per_minute(cls, per_minute: float) -> "TokenBucket":
        return cls(per_minute / 60.0, per_minute)

    def _refill(self, now: float) -> None:
        if self.rate is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def set_rate(self, rate: float | None, capacity: float | None = None,
                 tokens: float | None = None) -> None:
        self._refill(time.monotonic())
        self.rate = rate
        if rate is not None:
            self.capacity = capacity if capacity is not None else max(1.0, rate)
            self.tokens = min(self.capacity, self.tokens if tokens is None else tokens)

    def open(self) -> bool:
        """Unpaced, with no hold: `take` would return at once (the common case, checked
        without creating its coroutine)."""
        return self.rate is None and self.on_resume is None and (
            not self.hold_until or self.hold_until <= time.monotonic())

    async def take(self, amount: float = 1.0) -> bool:
        """Wait for `amount`; True if the caller had to wait for tokens (pacing was binding)."""
        if self.open():
            return False  # the common unlimited case: no lock, no await
        waited = False
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self.hold_until:
                    await asyncio.sleep(self.hold_until - now)
                    continue
                if self.on_resume is not None:
                    resume, self.on_resume = self.on_resume, None
                    resume()
                self._refill(now)
                if self.rate is None:
                    return waited
                need = min(amount, self.capacity)
                if self.tokens >= need:
                    self.tokens -= need
                    return waited
                waited = True
                await asyncio.sleep((need - self.tokens) / self.rate)


@dataclass
class _Epoch:
    """Sends between two rate cuts: what the server admitted tells its rate."""

    start: float
    sent: int = 0
    sent_tokens: float = 0.0
    limited: int = 0
    limited_tokens: float = 0.0
    cut: float = 0.0


@dataclass
class _Cut:
    kind: str  # "requests" or "tokens"
    epoch: int
    hold: float
    rate_before: float | None
    header_rate: float | None


class Pacer:
    """Learns a server's rate limit from its 429s and paces every sender of one client to it.

    Unpaced until the first 429 (an unlimited server costs nothing). A 429 for a request sent
    since the last cut is a new cut: every sender waits until the Retry-After moment
    (`retry-after-ms` or `Retry-After`; without one, `backoff(cuts in a row)`: the client's
    RetryPolicy.backoff), then sends at the learned rate, in a burst of at most one second's
    worth. The rate is the server's own
    word when it sends `x-ratelimit-*` headers (used - remaining over reset), else what it
    admitted since the last cut divided by that time plus the hold (a bucket that emptied and
    is refilled by the hold), times a safety margin, and never above the rate that just got
    429s. A "tokens" 429 (TPM) cuts the token rate the same way. While pacing is what holds
    senders back, the rate creeps up: 0.5%/s near the last limit, 5%/s beyond it, and pacing
    ends when the rate is 16 times the last limit. A user's --rpm/--tpm is a ceiling.
    """

    MARGIN = 0.97
    SLOW_CREEP = 0.005  # per second, within 10% above the rate of the last cut
    FAST_CREEP = 0.05
    COOLDOWN = 2.0  # seconds after a hold before creeping
    FLOOR = 1.0 / 60  # one request a minute

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 backoff: Callable[[int], float]) -> None:
        self.requests = TokenBucket.per_minute(rpm) if rpm else TokenBucket()
        self.tokens = TokenBucket.per_minute(tpm) if tpm else TokenBucket()
        self._ceiling = {"requests": rpm / 60 if rpm else None,
                         "tokens": tpm / 60 if tpm else None}
        self._last_limit: dict[str, float | None] = {"requests": None, "tokens": None}
        # The hold after a 429 without Retry-After: the client's RetryPolicy.backoff
        # (cuts in a row -> seconds).
        self._backoff = backoff
        self.epoch = 0
        self._epochs: dict[int, _Epoch] = {}
        self._pending: _Cut | None = None
        self._resumed = 0.0
        self._last_creep = 0.0
        self.cuts = 0
        self._cuts_in_a_row = 0

    def bucket(self, kind: str) -> TokenBucket:
        return self.tokens if kind == "tokens" else self.requests

    async def acquire(self, tokens: float) -> int:
        """Wait for this send's turn; returns the epoch to pass back with the outcome."""
        waited = False
        if not self.requests.open():
            waited = await self.requests.take(1.0)
        if not self.tokens.open():
            waited = await self.tokens.take(tokens) or waited
        if waited and self._pending is None:
            self._creep()
        epoch = self._epochs.get(self.epoch)
        if epoch is None:
            epoch = self._epochs[self.epoch] = _Epoch(start=time.monotonic())
        epoch.sent += 1
        epoch.sent_tokens += tokens
        return self.epoch

    def on_success(self, ratelimit: Any = None) -> None:
        self._cuts_in_a_row = 0
        if ratelimit is not None:
            for kind in ("requests", "tokens"):
                state = getattr(ratelimit, kind, None)
                if state is not None and state.low:
                    self._pace_from_header(kind, state.refill_rate())

    def on_rate_limited(self, epoch: int, tokens: float, error: TransientError) -> None:
        stats = self._epochs.get(epoch)
        if stats is not None:
            stats.limited += 1
            stats.limited_tokens += tokens
        now = time.monotonic()
        hold = error.retry_after
        if hold is None:
            hold = self._backoff(self._cuts_in_a_row)
        until = now + min(600.0, hold)
        if epoch != self.epoch:  # sent before the last cut: part of a burst already handled
            self._hold(max(until, self.requests.hold_until))
            return
        kind = "tokens" if error.limit_kind == "tokens" else "requests"
        state = getattr(error.ratelimit, kind, None) if error.ratelimit is not None else None
        self.cuts += 1
        self._cuts_in_a_row += 1
        if stats is not None:
            stats.cut = now
        self._pending = _Cut(kind, epoch, hold, self.bucket(kind).rate,
                             state.refill_rate() if state is not None else None)
        self.epoch += 1
        for old in [e for e in self._epochs if e < self.epoch - 4]:
            del self._epochs[old]
        self._hold(until)
        # The server's bucket is empty now; ours refills during the hold.
        self.bucket(kind).set_rate(self.bucket(kind).rate, tokens=0.0)
        self.requests.on_resume = self._resolve

    def _hold(self, until: float) -> None:
        for bucket in (self.requests, self.tokens):
            bucket.hold_until = max(bucket.hold_until, until)

    def _resolve(self) -> None:
        """At the end of a hold: set the rate the last cut taught us."""
        cut, self._pending = self._pending, None
        if cut is None:
            return
        now = time.monotonic()
        self._resumed = self._last_creep = now
        stats = self._epochs.get(cut.epoch)
        estimate = cut.header_rate
        if estimate is None and stats is not None:
            window = max(0.0, stats.cut - stats.start) + cut.hold
            if cut.kind == "tokens":
                admitted = stats.sent_tokens - stats.limited_tokens
            else:
                admitted = stats.sent - stats.limited
            if admitted > 0 and window > 0:
                estimate = admitted / window
        before = cut.rate_before
        if estimate is None:
            # Nothing got through since the last cut (e.g. a used-up per-minute budget): the
            # hold, growing while cuts come in a row, is the backoff; the rate stays.
            return
        rate = min(estimate, before if before is not None else estimate)
        rate = max(self.FLOOR, rate * self.MARGIN)
        ceiling = self._ceiling[cut.kind]
        if ceiling is not None:
            rate = min(rate, ceiling)
        self._last_limit[cut.kind] = before if before is not None else estimate
        capacity = max(1.0, rate)  # one second's worth; the server refilled during the hold
        # At least one request goes the moment the hold ends.
        self.bucket(cut.kind).set_rate(rate, capacity,
                                       tokens=max(1.0, min(capacity, rate * cut.hold)))

    def _pace_from_header(self, kind: str, rate: float | None) -> None:
        if rate is None:
            return
        bucket = self.bucket(kind)
        ceiling = self._ceiling[kind]
        if ceiling is not None:
            rate = min(rate, ceiling)
        if bucket.rate is None or rate < bucket.rate:
            bucket.set_rate(rate, max(1.0, rate), tokens=min(bucket.tokens, 1.0))
            self._last_limit[kind] = rate
            self._resumed = self._last_creep = time.monotonic()

    def _creep(self) -> None:
        now = time.monotonic()
        dt = min(1.0, now - self._last_creep)
        self._last_creep = now
        if now - self._resumed < self.COOLDOWN:
            return
        for kind in ("requests", "tokens"):
            bucket = self.bucket(kind)
            if bucket.rate is None:
                continue
            limit = self._last_limit[kind] or bucket.rate
            ceiling = self._ceiling[kind]
            growth = self.SLOW_CREEP if bucket.rate <= 1.1 * limit else self.FAST_CREEP
            rate = bucket.rate * (1.0 + growth * dt)
            if ceiling is not None:
                rate = min(rate, ceiling)
                bucket.set_rate(rate, max(bucket.capacity, 1.0))
            elif rate > 16 * limit:
                bucket.set_rate(None)  # 429s stopped long ago: stop pacing
            else:
                bucket.set_rate(rate, max(1.0, rate))

    @property
    def rate(self) -> float | None:
        """Requests per second being paced to (None: unpaced)."""
        return self.requests.rate
