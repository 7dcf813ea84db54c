"""LLMClient: the one place a request goes through cache, limits and the one retry loop.

One module although over 400 lines: the retry loop, the routing of each attempt to an
endpoint (with benching) and the re-ask loop are one piece of control flow over the same
state, and reading them apart would hide how a request is retried. Pacing lives in
llm/pacing.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from synthcodec.cache import RequestCache, request_key
from synthcodec.errors import UserError
from synthcodec.io import is_utf8
from synthcodec.judging.fence import strip_code_fence
from synthcodec.llm.base import (
    Backend,
    Completion,
    ContinuationRequest,
    EmbeddingRequest,
    PermanentError,
    Request,
    TransientError,
)
from synthcodec.llm.pacing import AdaptiveLimit, Pacer
from synthcodec.llm.reasoning import split as split_reasoning

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
# Requests given up (every attempt failed: 5xx, timeouts, bad bodies) before the model
# answered any request of the run: it is down behind a live front (a proxy with a dead
# backend) and the run stops, as when it cannot be reached.
DEAD_AFTER_REQUESTS = 3


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
    # Tokens counted at the worst case for replies that reported no usage (cost.Spend):
    # not in prompt/completion_tokens, which are what servers reported, but in the token cap.
    worst_case_tokens: int = 0
    batches: int = 0  # provider batches created (--batch; llm/batch.py)
    # What the progress line shows of --batch ("batch 1/2 in_progress 40/100"); not a count.
    batch_status: str = field(default="", repr=False)
    # Per endpoint (its redacted NAME@URL), only for models with several endpoints.
    endpoints: dict[str, EndpointCounts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The run-wide counters (summed across invocations and stages)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("endpoints", "batch_status")}

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

    def backoff(self, attempt: int) -> float:
        """The exponential backoff before jitter (also the Pacer's hold after a 429 without
        Retry-After)."""
        return min(self.max_delay, self.base_delay * 2 ** attempt)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = self.backoff(attempt)
        jittered = random.uniform(backoff / 2, backoff)  # "equal jitter"
        if retry_after is not None:
            # The server knows best; a small jitter keeps the retries of one burst apart.
            return min(600.0, retry_after) + random.uniform(0, 0.1 * max(retry_after, 0.5))
        return jittered


BENCH_AFTER = 4  # failures in a row (connection, 5xx, timeouts) that bench an endpoint
BENCH_SECONDS = 5.0  # the first cool-down; it doubles while an endpoint keeps failing
BENCH_MAX_SECONDS = 60.0


class Endpoint:
    """One server of a model: its backend, its own in-flight limit and pacer, its health."""

    def __init__(self, backend: Backend, max_in_flight: int, rpm: float | None,
                 tpm: float | None, counts: EndpointCounts, retry: RetryPolicy) -> None:
        self.backend = backend
        self.limit = AdaptiveLimit(max_in_flight)
        self.pacer = Pacer(rpm, tpm, backoff=retry.backoff)
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
        batch: Any = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.retry = retry or RetryPolicy()
        self.stats = stats if stats is not None else Stats()
        self.on_retry = on_retry
        # cost.Meter: reserves a request's worst-case cost before it is sent (raising
        # cost.BudgetReached instead of crossing a budget) and settles it with the usage.
        self.meter = meter
        # llm.batch.BatchSender (--batch): an attempt is a request's slot in a provider batch.
        self.batch = batch
        members = list(getattr(backend, "members", None) or [backend])
        self.endpoints: list[Endpoint] = []
        for member in members:
            counts = EndpointCounts()
            if len(members) > 1:
                counts = self.stats.endpoints.setdefault(member.identity, counts)
            self.endpoints.append(Endpoint(member, max_in_flight, rpm, tpm, counts,
                                           self.retry))
        self.pacer = self.endpoints[0].pacer  # the first (the only one, for one server)
        self._answered = 0  # successes on any endpoint: the run's progress
        self._given_up = 0  # requests given up while nothing had answered (DEAD_AFTER_REQUESTS)
        self._room = asyncio.Condition()  # signalled when an endpoint finishes an attempt
        # cache key -> the answer of that request, in flight now (None if its send fails)
        self._sending: dict[str, asyncio.Future[Completion | None]] = {}

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
        completion = await self.cache.lookup(key) if self.cache is not None else None
        if completion is None and key in self._sending:
            # The same request is in flight (both orders of an identical pair, a record
            # retried while its first try runs): its answer serves this one as the cache
            # would a moment later. None: that send failed or was cancelled; send it here.
            completion = await asyncio.shield(self._sending[key])
        if completion is not None:
            self.stats.cache_hits += 1
        else:
            completion = await self._send_once(request, key)
        completion = self._answer(completion, request)
        if completion.finish_reason == "length" and not allow_truncated:
            raise RecordFailed(
                f"output truncated at max_tokens={request.max_tokens} (finish_reason=length)",
                repeats=self._repeats(request),
            )
        return completion

    async def _send_once(self, request: Request, key: str) -> Completion:
        """Send `request`, letting identical requests that come meanwhile wait for its
        answer (`_sending`); store the answer in the cache."""
        shared: asyncio.Future[Completion | None] | None = None
        if key:
            shared = self._sending[key] = asyncio.get_running_loop().create_future()
        completion: Completion | None = None
        try:
            completion = await self._send(request, key)
            if self.cache is not None and "batch" not in completion.extra:  # batch: stored
                self.cache.put(key, completion)
            return completion
        finally:
            if shared is not None:
                shared.set_result(completion)
                # Dropped one loop turn later: a caller whose cache lookup was answered in
                # the same batch as this one's resumes after it and still finds the answer.
                asyncio.get_running_loop().call_soon(self._forget_sent, key, shared)

    def _forget_sent(self, key: str, shared: asyncio.Future[Completion | None]) -> None:
        if self._sending.get(key) is shared:
            del self._sending[key]

    def _answer(self, completion: Completion, request: Request) -> Completion:
        """The reply as the stages see it: the answer in `text`, a reasoning trace moved to
        `reasoning` (llm/reasoning.py). A trace the token limit cut, or an answer that is
        empty, fails the record: there is nothing to parse or keep."""
        if not completion.text.isascii() and not is_utf8(completion.text):  # a lone surrogate ("\ud800" in a JSON body)
            completion = replace(completion, text=_mend_surrogates(completion.text))
        parts = split_reasoning(completion.text)
        if parts.reasoning or parts.cut:
            completion = replace(completion, text=parts.answer, reasoning=parts.reasoning)
        if parts.cut:
            raise RecordFailed(
                f"the reply ended inside the model's reasoning ({len(parts.reasoning)} "
                f"characters of it, no answer): the token limit cut it; raise --max-tokens "
                f"(now {request.max_tokens})", repeats=self._repeats(request))
        if not completion.text.strip():
            if completion.reasoning or completion.finish_reason == "length":
                after = (f"after {len(completion.reasoning)} characters of reasoning "
                         if completion.reasoning else "")
                raise RecordFailed(
                    f"the model's answer is empty {after}(finish_reason="
                    f"{completion.finish_reason}): raise --max-tokens (now {request.max_tokens}) "
                    "so it has tokens left to answer", repeats=self._repeats(request))
            raise RecordFailed("the model returned an empty answer",
                               repeats=self._repeats(request))
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

    async def _made_room(self) -> None:
        """An endpoint finished an attempt: wake one request waiting in `_route`."""
        async with self._room:
            self._room.notify()

    async def _send(self, request: Request, key: str) -> Completion:
        attempt = rate_limited = 0
        progress = self._answered
        prompt_tokens = request.estimated_prompt_tokens()  # once, for the pacer and the meter
        tokens = prompt_tokens + request.max_tokens
        while True:
            endpoint = await self._route()
            endpoint.assigned += 1
            try:
                completion, error, epoch = await self._attempt(endpoint, request, prompt_tokens,
                                                               key)
            finally:
                endpoint.assigned -= 1
                if len(self.endpoints) > 1:
                    await self._made_room()
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
                if not error.rate_limited and self._answered == 0:
                    self._given_up += 1
                self._check_answering(error)
                if error.rate_limited:
                    raise RecordFailed(
                        f"gave up after {rate_limited} rate-limited attempts in a row "
                        f"with no request of this run getting through: {error}")
                raise RecordFailed(f"gave up after {attempt + rate_limited} attempts: {error}")
            self._check_answering(error)  # another request found the model dead: stop now
            self.stats.retries += 1
            if self.on_retry:
                self.on_retry(f"retrying in {delay:.1f}s: {error}" if delay else
                              f"rate limited, every request waits for the pacer: {error}"
                              if error.rate_limited else f"retrying elsewhere: {error}")
            if delay:
                await asyncio.sleep(delay)

    def _one(self, endpoint: Endpoint, request: Request, key: str) -> Awaitable[Completion]:
        """The send itself: the endpoint's backend, or (--batch) the request's batch slot."""
        if isinstance(request, (ContinuationRequest, EmbeddingRequest)):
            return measure(endpoint.backend, request)
        if self.batch is not None:
            return self.batch.complete(request, key)
        return endpoint.backend.complete(request)

    async def _attempt(self, endpoint: Endpoint, request: Request, prompt_tokens: float,
                       key: str) -> tuple[Completion | None, TransientError | None, int]:
        """One attempt on one endpoint (with --batch: in a provider batch), reserved against
        the run's budget when metered: the completion, or the transient error to retry on."""
        epoch = await endpoint.pacer.acquire(prompt_tokens + request.max_tokens)
        await endpoint.limit.acquire()
        ticket = completion = None
        try:
            if self.meter is not None:  # may raise cost.BudgetReached: nothing sent
                ticket = self.meter.reserve(request, prompt_tokens)
            self.stats.requests += 1
            endpoint.counts.requests += 1
            completion = await self._one(endpoint, request, key)
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
            if ticket is not None:
                self.meter.settle(ticket, completion)
            endpoint.limit.release()
        self._answered += 1
        endpoint.answered += 1
        endpoint.counts.answered += 1
        endpoint.failing = endpoint.benches = endpoint.connect_failures = 0
        endpoint.unreachable_since = None
        endpoint.limit.grow()
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

        `parse` raises ValueError (e.g. ParseError) with the reason, or RecordFailed when the
        reply cannot be mended by asking again (it is marked `repeats` when the same request
        would give it again). At temperature 0 the same
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
            except RecordFailed as exc:
                exc.repeats = exc.repeats or self._repeats(request)
                raise
            except ValueError as exc:
                problem = clip(getattr(exc, "reason", None) or str(exc))
            request = replace(request, messages=request.messages + (
                {"role": "assistant", "content": text},
                {"role": "user", "content": correction(problem)},
            ))
        snippet = clip(text.strip().replace("\n", " "))
        raise RecordFailed(f"{failure} after {reasks + 1} tries: {problem}; last reply: {snippet!r}",
                           repeats=self._repeats(request))

    async def structured(self, request: Request, model: type[T], *, reasks: int = 2) -> T:
        """JSON output validated against `model`; re-asks with the error, then gives up. A
        reply cut off at max_tokens fails at once (fail_if_truncated)."""

        def parse(completion: Completion) -> T:
            fail_if_truncated(completion, request.max_tokens)
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

    async def continuation_logprobs(self, request: ContinuationRequest) -> list[float]:
        """Each token's log-probability of `request.continuation` after its messages."""
        return await self._measured(request, "token_logprobs")

    async def embedding(self, request: EmbeddingRequest) -> list[float]:
        """The embedding vector of `request.text`."""
        return await self._measured(request, "embedding")

    async def _measured(self, request: ContinuationRequest | EmbeddingRequest,
                        what: str) -> list[float]:
        """A measurement through the cache and the one retry loop. The cache holds
        completions, so the numbers are kept as the JSON text of one."""
        key = request_key(self.backend.identity, request) if self.cache is not None else ""
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None and cached.finish_reason == what:
            self.stats.cache_hits += 1
            return [float(x) for x in json.loads(cached.text)]
        completion = await self._send(request, key)  # type: ignore[arg-type]
        values = [float(x) for x in completion.extra[what]]
        if self.cache is not None:
            self.cache.put(key, Completion(text=json.dumps(values), finish_reason=what,
                                           prompt_tokens=completion.prompt_tokens))
        return values

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

    def _check_answering(self, error: TransientError) -> None:
        """Stop the run when DEAD_AFTER_REQUESTS requests were given up and the model has
        answered none of this run's requests."""
        if self._answered == 0 and self._given_up >= DEAD_AFTER_REQUESTS:
            raise FatalModelError(
                f"the model answered none of this run's requests: {self._given_up} were given "
                f"up after {self.retry.max_attempts} attempts each, the last with {error} "
                "(is the service behind this URL up?)")

    def _repeats(self, request: Request) -> bool:
        """Would sending `request` again give the same reply (cached, or greedy decoding)?"""
        return self.cache is not None or request.temperature == 0

    async def aclose(self) -> None:
        if self.batch is not None:
            await self.batch.aclose()
        await self.backend.aclose()


def clip(text: str, limit: int = 200) -> str:
    """`text`, cut to `limit` characters with an ellipsis (for reasons and messages)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mend_surrogates(text: str) -> str:
    """Surrogate pairs joined, a lone surrogate (which no UTF-8 file can hold) made U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def fail_if_truncated(completion: Completion, max_tokens: int) -> None:
    """Raise RecordFailed for a structured reply cut off at max_tokens: not re-asked, since
    the same request would be cut off again (LLMClient.structured, llm.json_reply.JsonReply)."""
    if completion.finish_reason == "length":
        raise RecordFailed(
            f"output truncated at max_tokens={max_tokens} (finish_reason=length) before "
            f"the JSON was complete: {clip(completion.text.strip(), 80)!r}")


def _short_validation_error(exc: ValidationError) -> str:
    first: dict[str, Any] = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "output"
    more = len(exc.errors()) - 1
    return f"{where}: {first.get('msg')}" + (f" (+{more} more)" if more > 0 else "")


def measure(backend: Backend, request: ContinuationRequest | EmbeddingRequest
            ) -> Awaitable[Completion]:
    """One attempt at a measuring request: a Completion whose `extra` holds the numbers
    (`token_logprobs` or `embedding`); PermanentError when the backend cannot measure."""
    if isinstance(request, ContinuationRequest):
        method, capability, what = ("continuation_logprobs", "scores_continuations",
                                    "log-probabilities of a given reply")
    else:
        method, capability, what = "embed", "embeds", "embeddings"
    if not getattr(backend, capability, False):
        raise PermanentError(f"{backend.identity} cannot give {what}")
    return getattr(backend, method)(request)  # type: ignore[no-any-return]


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
    "RecordFailed",
    "RetryPolicy",
    "Stats",
    "clip",
    "default_in_flight",
    "fail_if_truncated",
]
