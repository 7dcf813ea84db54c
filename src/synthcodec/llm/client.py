"""LLMClient: the one place a request goes through cache, limits and the one retry loop."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from synthcodec.cache import RequestCache, request_key
from synthcodec.errors import UserError
from synthcodec.fence import strip_code_fence
from synthcodec.llm.base import (
    Backend,
    Completion,
    PermanentError,
    Request,
    TransientError,
)

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")


@dataclass
class Asked(Generic[V]):
    """A parsed reply, the completion it came from, and how many tries it took."""

    value: V
    completion: Completion
    attempts: int


class RecordFailed(Exception):
    """This record cannot be completed; it goes to the failed rows with this reason.

    `repeats`: the same request gives the same failure again (a cut-off or unreadable reply
    at temperature 0 or from the cache, a request the server refuses), so re-running the
    same command will not help; the summary says so.
    """

    def __init__(self, message: str, *, repeats: bool = False) -> None:
        super().__init__(message)
        self.repeats = repeats


class FatalModelError(UserError):
    """Every request would fail the same way (bad key, unknown model, no server): stop the run."""

    exit_code = 3


UNREACHABLE_TRIES = 3  # connection failures before the first answer that stop the run
UNREACHABLE_SECONDS = 60.0  # without a connection after the server had answered


@dataclass
class EndpointCounts:
    """One endpoint of a several-server model: what it was sent and how it fared."""

    requests: int = 0  # attempts sent to it
    answered: int = 0
    failures: int = 0  # transient (connection, 5xx, timeout, bad body) and permanent errors
    rate_limited: int = 0  # 429s
    benched: int = 0  # times it was benched for a cool-down
    benched_until: float = field(default=0.0, repr=False)  # time.monotonic(); 0: not benched

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "benched_until"}

    @property
    def benched_now(self) -> bool:
        return self.benched_until > time.monotonic()


@dataclass
class Stats:
    requests: int = 0  # sent to a backend, retries included
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    rate_limited: int = 0
    request_failures: int = 0
    usd: float = 0.0  # dollars of models with a known price (cost.Spend adds them)
    # Per endpoint (its redacted NAME@URL), only for models with several endpoints.
    endpoints: dict[str, EndpointCounts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The run-wide counters (summed across invocations and stages)."""
        return {k: v for k, v in self.__dict__.items() if k != "endpoints"}

    def endpoint_counts(self) -> dict[str, dict[str, int]]:
        return {name: c.as_dict() for name, c in self.endpoints.items()}

    def manifest_fields(self) -> dict[str, Any]:
        """Extra manifest fields: `endpoints` when a model has several."""
        return {"endpoints": self.endpoint_counts()} if self.endpoints else {}


@dataclass
class RetryPolicy:
    max_attempts: int = 8  # for 408/409/5xx, timeouts, connection errors, bad bodies
    # 429s in a row with no success anywhere in the run before a record is given up
    max_rate_limited: int = 40
    base_delay: float = 0.5
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2 ** attempt)
        jittered = random.uniform(backoff / 2, backoff)  # "equal jitter"
        if retry_after is not None:
            # The server knows best; a small jitter keeps the retries of one burst apart.
            return min(600.0, retry_after) + random.uniform(0, 0.1 * max(retry_after, 0.5))
        return jittered


class AdaptiveLimit:
    """The requests-in-flight cap of one endpoint (a semaphore). Rate limits are the Pacer's
    job: cutting requests in flight after a 429 does not help when even one short request at a
    time exceeds the server's rate, and it starves slow servers of throughput. What adapts is
    failure: an endpoint back from the bench starts at one request in flight and doubles with
    each success up to `maximum`."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.in_use = 0
        self._cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._cond:
            while self.in_use >= self.limit:
                await self._cond.wait()
            self.in_use += 1

    async def release(self) -> None:
        async with self._cond:
            self.in_use -= 1
            self._cond.notify()

    def cut(self) -> None:
        """Down to one request in flight: an endpoint back from the bench is on probation."""
        self.limit = 1

    async def grow(self) -> None:
        """After a success: double back up to the maximum (slow start)."""
        if self.limit >= self.maximum:
            return
        async with self._cond:
            self.limit = min(self.maximum, self.limit * 2)
            self._cond.notify_all()

    @property
    def load(self) -> float:
        return self.in_use / self.limit


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

    async def take(self, amount: float = 1.0) -> bool:
        """Wait for `amount`; True if the caller had to wait for tokens (pacing was binding)."""
        if self.rate is None and self.on_resume is None and self.hold_until <= time.monotonic():
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
    (`retry-after-ms` or `Retry-After`; without one, exponential backoff), then sends at the
    learned rate, in a burst of at most one second's worth. The rate is the server's own
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

    def __init__(self, rpm: float | None = None, tpm: float | None = None,
                 backoff: Callable[[int], float] | None = None) -> None:
        self.requests = TokenBucket.per_minute(rpm) if rpm else TokenBucket()
        self.tokens = TokenBucket.per_minute(tpm) if tpm else TokenBucket()
        self._ceiling = {"requests": rpm / 60 if rpm else None,
                         "tokens": tpm / 60 if tpm else None}
        self._last_limit: dict[str, float | None] = {"requests": None, "tokens": None}
        self._backoff = backoff or (lambda n: min(60.0, 0.5 * 2 ** n))
        self.epoch = 0
        self._epochs: dict[int, _Epoch] = {}
        self._pending: _Cut | None = None
        self._resumed = 0.0
        self._last_creep = 0.0
        self.successes = 0  # the run's progress: a record is not given up on 429s while it grows
        self.cuts = 0
        self._cuts_in_a_row = 0

    def bucket(self, kind: str) -> TokenBucket:
        return self.tokens if kind == "tokens" else self.requests

    async def acquire(self, tokens: float) -> int:
        """Wait for this send's turn; returns the epoch to pass back with the outcome."""
        waited = await self.requests.take(1.0)
        if self.tokens.rate is not None or self.tokens.hold_until:
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
        self.successes += 1
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


BENCH_AFTER = 4  # failures in a row (connection, 5xx, timeouts) that bench an endpoint
BENCH_SECONDS = 5.0  # the first cool-down; it doubles while an endpoint keeps failing
BENCH_MAX_SECONDS = 60.0


class Endpoint:
    """One server of a model: its backend, its own in-flight limit and pacer, its health."""

    def __init__(self, backend: Backend, max_in_flight: int, rpm: float | None,
                 tpm: float | None, counts: EndpointCounts) -> None:
        self.backend = backend
        self.limit = AdaptiveLimit(max_in_flight)
        self.pacer = Pacer(rpm, tpm)
        self.counts = counts
        self.assigned = 0  # requests routed here and not finished (waiting on pacer or limit too)
        self.failing = 0  # failures in a row, 429s not counted
        self.benches = 0  # benches in a row (without a success in between)
        self.benched_until = 0.0
        self.answered = 0
        self.connect_failures = 0  # connection failures in a row
        self.unreachable_since: float | None = None

    @property
    def name(self) -> str:
        return self.backend.identity

    def load(self) -> float:
        return self.assigned / self.limit.limit

    def down(self, now: float) -> bool:
        """No connection can be made: three tries before it ever answered, or a minute
        without a connection after it had."""
        if self.unreachable_since is None:
            return False
        return ((self.answered == 0 and self.connect_failures >= UNREACHABLE_TRIES)
                or now - self.unreachable_since > UNREACHABLE_SECONDS)


class LLMClient:
    """A backend with caching, concurrency and rate limits, retries and usage counts.

    A backend with `members` (llm.pool.PoolBackend: several servers of one model) gets one
    `Endpoint` per member, each with its own in-flight limit (`max_in_flight` each) and its
    own Pacer; every attempt of the one retry loop goes to the endpoint with the fewest
    requests in flight relative to its limit, preferring endpoints whose last request did not
    fail. An endpoint that fails BENCH_AFTER times in a row is benched for a cool-down
    (5 s, doubling up to a minute while it keeps failing); back from the bench it gets one
    request at a time until it answers. The run stops (FatalModelError) only when no endpoint
    can be reached.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        cache: RequestCache | None = None,
        max_in_flight: int = 64,
        rpm: float | None = None,
        tpm: float | None = None,
        retry: RetryPolicy | None = None,
        stats: Stats | None = None,
        on_retry: Callable[[str], None] | None = None,
        meter: Any = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.retry = retry or RetryPolicy()
        self.stats = stats if stats is not None else Stats()
        self.on_retry = on_retry
        # cost.Meter: reserves a request's worst-case cost before it is sent (raising
        # cost.BudgetReached instead of crossing a budget) and settles it with the usage.
        self.meter = meter
        members = list(getattr(backend, "members", None) or [backend])
        self.endpoints: list[Endpoint] = []
        for member in members:
            counts = EndpointCounts()
            if len(members) > 1:
                counts = self.stats.endpoints.setdefault(member.identity, counts)
            self.endpoints.append(Endpoint(member, max_in_flight, rpm, tpm, counts))
        # The first endpoint's (the only one's, for a single server).
        self.limit = self.endpoints[0].limit
        self.pacer = self.endpoints[0].pacer
        self._answered = 0  # successes on any endpoint: the run's progress
        self._room = asyncio.Condition()  # signalled when an endpoint finishes an attempt

    @property
    def identity(self) -> str:
        return self.backend.identity

    @property
    def max_in_flight(self) -> int:
        """Requests this client can have in flight: the sum of its endpoints' limits."""
        return sum(e.limit.maximum for e in self.endpoints)

    async def complete(self, request: Request, *, allow_truncated: bool = False) -> Completion:
        """One completion, from the cache or the backend; truncated output is a failure."""
        key = request_key(self.backend.identity, request) if self.cache is not None else ""
        completion = self.cache.get(key) if self.cache is not None else None
        if completion is not None:
            self.stats.cache_hits += 1
        else:
            completion = await self._send(request)
            if self.cache is not None:
                self.cache.put(key, completion)
        if completion.finish_reason == "length" and not allow_truncated:
            raise RecordFailed(
                f"output truncated at max_tokens={request.max_tokens} (finish_reason=length)",
                repeats=self._repeats(request),
            )
        return completion

    async def _route(self) -> Endpoint:
        """The endpoint for the next attempt: chosen only once one has room, so that requests
        wait here, not in the queue of an endpoint that turns out slow (or benched)."""
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        while True:
            now = time.monotonic()
            ready = [e for e in self.endpoints
                     if e.benched_until <= now and e.assigned < e.limit.limit]
            if ready:
                # A server holding every sender until its Retry-After moment comes last.
                return min(ready, key=lambda e: (e.pacer.requests.hold_until > now,
                                                 e.failing > 0, e.load(), e.failing))
            benched = [e.benched_until for e in self.endpoints if e.benched_until > now]
            async with self._room:
                try:
                    await asyncio.wait_for(self._room.wait(),
                                           min(benched) - now if benched else None)
                except TimeoutError:
                    pass

    async def _done(self, endpoint: Endpoint) -> None:
        endpoint.assigned -= 1
        if len(self.endpoints) > 1:
            async with self._room:
                self._room.notify()

    async def _send(self, request: Request) -> Completion:
        attempt = rate_limited = 0
        progress = self._answered
        tokens = sum(len(m["content"]) for m in request.messages) / 4 + request.max_tokens
        while True:
            endpoint = await self._route()
            endpoint.assigned += 1
            try:
                completion, error, epoch = await self._attempt(endpoint, request, tokens)
            finally:
                await self._done(endpoint)
            if completion is not None:
                return completion
            assert error is not None
            self._check_reachable(endpoint, error, attempt)
            pacer = endpoint.pacer
            if error.rate_limited:
                self.stats.rate_limited += 1
                endpoint.counts.rate_limited += 1
                pacer.on_rate_limited(epoch, tokens, error)
                # 429s alone never fail a record while other requests get through: only a
                # run of them with no success anywhere in between counts.
                if self._answered != progress:
                    progress, rate_limited = self._answered, 0
                rate_limited += 1
                exhausted = rate_limited >= self.retry.max_rate_limited
                delay = 0.0  # the pacer holds every sender until the Retry-After moment
            else:
                self._failed(endpoint, error)
                attempt += 1
                exhausted = attempt >= self.retry.max_attempts
                delay = self.retry.delay(attempt - 1, error.retry_after)
                if self._healthy_other(endpoint):
                    delay = 0.0  # the retry goes to another endpoint that is answering
            if exhausted:
                self.stats.request_failures += 1
                if error.rate_limited:
                    raise RecordFailed(
                        f"gave up after {rate_limited} rate-limited attempts in a row "
                        f"with no request of this run getting through: {error}")
                raise RecordFailed(f"gave up after {attempt + rate_limited} attempts: {error}")
            self.stats.retries += 1
            if self.on_retry:
                self.on_retry(f"retrying in {delay:.1f}s: {error}" if delay else
                              f"rate limited, every request waits for the pacer: {error}"
                              if error.rate_limited else f"retrying elsewhere: {error}")
            if delay:
                await asyncio.sleep(delay)

    async def _call(self, endpoint: Endpoint, request: Request) -> Completion:
        """One attempt at one endpoint, reserved against the run's budget when metered."""
        if self.meter is None:
            self.stats.requests += 1
            endpoint.counts.requests += 1
            return await endpoint.backend.complete(request)
        ticket = self.meter.reserve(request)  # may raise cost.BudgetReached: nothing sent
        self.stats.requests += 1
        endpoint.counts.requests += 1
        completion = None
        try:
            completion = await endpoint.backend.complete(request)
            return completion
        finally:
            self.meter.settle(ticket, completion)

    async def _attempt(self, endpoint: Endpoint, request: Request, tokens: float
                       ) -> tuple[Completion | None, TransientError | None, int]:
        """One attempt on one endpoint: the completion, or the transient error to retry on."""
        epoch = await endpoint.pacer.acquire(tokens)
        await endpoint.limit.acquire()
        try:
            completion = await self._call(endpoint, request)
        except TransientError as exc:
            return None, exc, epoch
        except TimeoutError:
            return None, TransientError(f"{endpoint.name}: timed out"), epoch
        except PermanentError as exc:
            self.stats.request_failures += 1
            endpoint.counts.failures += 1
            if exc.status in (401, 403, 404):
                raise FatalModelError(str(exc)) from exc
            raise RecordFailed(str(exc), repeats=True) from exc
        finally:
            await endpoint.limit.release()
        self._answered += 1
        endpoint.answered += 1
        endpoint.counts.answered += 1
        endpoint.failing = endpoint.benches = endpoint.connect_failures = 0
        endpoint.unreachable_since = None
        await endpoint.limit.grow()
        endpoint.pacer.on_success(completion.extra.get("ratelimit"))
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        return completion, None, epoch

    def _failed(self, endpoint: Endpoint, error: TransientError) -> None:
        """A failure that is not a 429: bench an endpoint that keeps failing (when the model
        has others to send to)."""
        endpoint.failing += 1
        endpoint.counts.failures += 1
        now = time.monotonic()
        if (len(self.endpoints) == 1 or endpoint.failing < BENCH_AFTER
                or endpoint.benched_until > now):
            return
        cool_down = min(BENCH_MAX_SECONDS, BENCH_SECONDS * 2 ** endpoint.benches)
        endpoint.benches += 1
        endpoint.benched_until = endpoint.counts.benched_until = now + cool_down
        endpoint.counts.benched += 1
        endpoint.limit.cut()
        if self.on_retry:
            self.on_retry(f"{endpoint.name}: {endpoint.failing} failures in a row, "
                          f"benched for {cool_down:g}s: {error}")

    def _healthy_other(self, endpoint: Endpoint) -> bool:
        now = time.monotonic()
        return any(e is not endpoint and e.failing == 0 and e.benched_until <= now
                   for e in self.endpoints)

    async def ask(
        self,
        request: Request,
        parse: Callable[[Completion], V],
        *,
        correction: Callable[[str], str],
        reasks: int = 2,
        failure: str = "no readable output",
    ) -> Asked[V]:
        """Ask until `parse` accepts the reply: the one re-ask loop every parsed stage uses.

        `parse` raises ValueError (e.g. ParseError) with the reason. At temperature 0 the same
        request gives the same reply (and the cache returns it), so a re-ask changes the
        conversation: it shows the reply and `correction(reason)`. Truncated replies reach
        `parse`, which decides whether what arrived is enough. After `reasks` re-asks the
        record fails with the last reason and a snippet of the last reply.
        """
        problem = text = ""
        for attempt in range(1, reasks + 2):
            completion = await self.complete(request, allow_truncated=True)
            text = completion.text
            try:
                return Asked(parse(completion), completion, attempt)
            except ValueError as exc:
                problem = _clip(getattr(exc, "reason", None) or str(exc))
            request = replace(request, messages=request.messages + (
                {"role": "assistant", "content": text},
                {"role": "user", "content": correction(problem)},
            ))
        snippet = _clip(text.strip().replace("\n", " "))
        raise RecordFailed(f"{failure} after {reasks + 1} tries: {problem}; last reply: {snippet!r}",
                           repeats=self._repeats(request))

    async def structured(self, request: Request, model: type[T], *, reasks: int = 2) -> T:
        """JSON output validated against `model`; re-asks with the error, then gives up."""

        def parse(completion: Completion) -> T:
            if completion.finish_reason == "length":
                raise ValueError(f"output truncated at max_tokens={request.max_tokens}")
            try:
                return model.model_validate_json(strip_code_fence(completion.text))
            except ValidationError as exc:
                raise ValueError(_short_validation_error(exc)) from None

        asked = await self.ask(
            replace(request, json_schema=model.model_json_schema()), parse, reasks=reasks,
            correction=lambda problem: (f"That reply was not valid ({problem}). Reply again with "
                                        "only a JSON object that matches the requested schema."),
            failure="no valid structured output",
        )
        return asked.value

    def _check_reachable(self, endpoint: Endpoint, error: TransientError, attempt: int) -> None:
        """Stop the run when no connection can be made to any endpoint: at once if none ever
        answered (three tries), or after a minute without any answer once one had."""
        if not error.connect:
            endpoint.unreachable_since = None
            endpoint.connect_failures = 0
            return
        now = time.monotonic()
        if endpoint.unreachable_since is None:
            endpoint.unreachable_since = now
        endpoint.connect_failures += 1
        never_answered = self._answered == 0
        if never_answered and len(self.endpoints) == 1:
            endpoint.connect_failures = max(endpoint.connect_failures, attempt + 1)
        # One server: this request's third try. Several: each has failed three times already.
        several = len(self.endpoints) > 1
        if all(e.down(now) for e in self.endpoints) and (
                not never_answered or attempt >= UNREACHABLE_TRIES - 1 or several):
            where = "the model server" if len(self.endpoints) == 1 else "any model server"
            raise FatalModelError(f"cannot reach {where}: {error} (is it running, "
                                  "and is the host/port in the model spec right?)")

    def _repeats(self, request: Request) -> bool:
        """Would sending `request` again give the same reply (cached, or greedy decoding)?"""
        return self.cache is not None or request.temperature == 0

    async def aclose(self) -> None:
        await self.backend.aclose()


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_validation_error(exc: ValidationError) -> str:
    first: dict[str, Any] = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "output"
    more = len(exc.errors()) - 1
    return f"{where}: {first.get('msg')}" + (f" (+{more} more)" if more > 0 else "")


def default_in_flight(backend: Backend, requested: int | None) -> int:
    """The user's choice, else what the backend can use (the embedded model: 2), else 64."""
    if requested:
        return requested
    hint = backend.max_concurrency
    return hint if isinstance(hint, int) else 64


__all__ = [
    "EndpointCounts",
    "FatalModelError",
    "LLMClient",
    "Pacer",
    "RecordFailed",
    "RetryPolicy",
    "Stats",
    "default_in_flight",
]
