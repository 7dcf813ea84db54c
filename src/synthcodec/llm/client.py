"""LLMClient: the one place a request goes through cache, limits and the one retry loop."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from synthcodec.cache import RequestCache, request_key
from synthcodec.errors import UserError
from synthcodec.llm.base import (
    Backend,
    Completion,
    LLMError,
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
class Stats:
    requests: int = 0  # sent to a backend, retries included
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    rate_limited: int = 0
    request_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class RetryPolicy:
    max_attempts: int = 8  # for 408/409/5xx, timeouts, connection errors, bad bodies
    max_rate_limited: int = 40  # 429s are expected under load: be patient, never drop work
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
    """A semaphore whose size halves after a 429 and creeps back up on success (AIMD)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self.in_use = 0
        self._cond = asyncio.Condition()
        self._last_cut = 0.0

    async def acquire(self) -> None:
        async with self._cond:
            while self.in_use >= max(1, int(self.limit)):
                await self._cond.wait()
            self.in_use += 1

    async def release(self) -> None:
        async with self._cond:
            self.in_use -= 1
            self._cond.notify()

    def on_success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit + 1.0 / max(1.0, self.limit))

    def on_rate_limited(self) -> None:
        now = time.monotonic()
        if now - self._last_cut > 1.0:  # one cut per burst, not one per rejected request
            self.limit = max(1.0, self.limit / 2)
            self._last_cut = now


class TokenBucket:
    """Requests- or tokens-per-minute limit; `amount` may exceed the bucket (it then waits)."""

    def __init__(self, per_minute: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.tokens = per_minute
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                need = min(amount, self.capacity)
                if self.tokens >= need:
                    self.tokens -= need
                    return
                await asyncio.sleep((need - self.tokens) / self.rate)


class LLMClient:
    """A backend with caching, concurrency and rate limits, retries and usage counts."""

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
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.limit = AdaptiveLimit(max_in_flight)
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None
        self.retry = retry or RetryPolicy()
        self.stats = stats if stats is not None else Stats()
        self.on_retry = on_retry
        # To stop early when the server cannot be reached at all (a wrong port): hours of
        # retries over every record would end in the same place.
        self._answered = 0
        self._unreachable_since: float | None = None

    @property
    def identity(self) -> str:
        return self.backend.identity

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

    async def _send(self, request: Request) -> Completion:
        attempt = rate_limited = 0
        while True:
            if self.rpm:
                await self.rpm.take(1)
            if self.tpm:
                chars = sum(len(m["content"]) for m in request.messages)
                await self.tpm.take(chars / 4 + request.max_tokens)
            await self.limit.acquire()
            try:
                self.stats.requests += 1
                completion = await self.backend.complete(request)
            except TransientError as exc:
                error: LLMError = exc
            except TimeoutError:
                error = TransientError(f"{self.identity}: timed out")
            except PermanentError as exc:
                self.stats.request_failures += 1
                if exc.status in (401, 403, 404):
                    raise FatalModelError(str(exc)) from exc
                raise RecordFailed(str(exc), repeats=True) from exc
            else:
                self._answered += 1
                self._unreachable_since = None
                self.limit.on_success()
                self.stats.prompt_tokens += completion.prompt_tokens
                self.stats.completion_tokens += completion.completion_tokens
                return completion
            finally:
                await self.limit.release()
            assert isinstance(error, TransientError)
            self._check_reachable(error, attempt)
            if error.rate_limited:
                rate_limited += 1
                self.stats.rate_limited += 1
                self.limit.on_rate_limited()
                exhausted = rate_limited >= self.retry.max_rate_limited
                delay = self.retry.delay(min(rate_limited, 6), error.retry_after)
            else:
                attempt += 1
                exhausted = attempt >= self.retry.max_attempts
                delay = self.retry.delay(attempt - 1, error.retry_after)
            if exhausted:
                self.stats.request_failures += 1
                raise RecordFailed(f"gave up after {attempt + rate_limited} attempts: {error}")
            self.stats.retries += 1
            if self.on_retry:
                self.on_retry(f"retrying in {delay:.1f}s: {error}")
            await asyncio.sleep(delay)

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
                return model.model_validate_json(_strip_fences(completion.text))
            except ValidationError as exc:
                raise ValueError(_short_validation_error(exc)) from None

        asked = await self.ask(
            replace(request, json_schema=model.model_json_schema()), parse, reasks=reasks,
            correction=lambda problem: (f"That reply was not valid ({problem}). Reply again with "
                                        "only a JSON object that matches the requested schema."),
            failure="no valid structured output",
        )
        return asked.value

    def _check_reachable(self, error: TransientError, attempt: int) -> None:
        """Stop the run when no connection can be made: at once if the server never answered
        (three tries), or after a minute without any answer once it had."""
        if not error.connect:
            self._unreachable_since = None
            return
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if (self._answered == 0 and attempt >= UNREACHABLE_TRIES - 1) or (
                now - self._unreachable_since > UNREACHABLE_SECONDS):
            raise FatalModelError(f"cannot reach the model server: {error} (is it running, "
                                  "and is the host/port in the model spec right?)")

    def _repeats(self, request: Request) -> bool:
        """Would sending `request` again give the same reply (cached, or greedy decoding)?"""
        return self.cache is not None or request.temperature == 0

    async def aclose(self) -> None:
        await self.backend.aclose()


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


def _short_validation_error(exc: ValidationError) -> str:
    first: dict[str, Any] = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "output"
    more = len(exc.errors()) - 1
    return f"{where}: {first.get('msg')}" + (f" (+{more} more)" if more > 0 else "")


def default_in_flight(backend: Backend, requested: int | None) -> int:
    """The user's choice, else what the backend can use (the embedded model: 2), else 64."""
    if requested:
        return requested
    hint = getattr(backend, "max_concurrency", None)
    return hint if isinstance(hint, int) else 64


__all__ = [
    "FatalModelError",
    "LLMClient",
    "RecordFailed",
    "RetryPolicy",
    "Stats",
    "default_in_flight",
]
