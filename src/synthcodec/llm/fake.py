"""A scripted model for tests: part of the public API so users can test their own recipes."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Union

from synthcodec.errors import UserError
from synthcodec.llm.base import (
    Completion,
    ContinuationRequest,
    EmbeddingRequest,
    LLMError,
    Request,
    TokenLogprob,
)

Reply = Union[str, Completion, LLMError]
ReplyFn = Callable[[Request], Union[Reply, Awaitable[Reply]]]
LogprobsFn = Callable[[ContinuationRequest], Union[list[float], LLMError]]
EmbedFn = Callable[[EmbeddingRequest], Union[list[float], LLMError]]


class FakeBackend:
    """Answers from a script, never the network.

    `replies` may be a list (consumed in order, the last one repeats), or a function of
    the Request returning text, a Completion, or an LLMError to raise. Every request is
    appended to `calls`, so a test can check exactly what the model was asked.

    `logprobs(request)` gives the token log-probabilities of a ContinuationRequest (default
    `word_logprobs`), `embed(request)` an EmbeddingRequest's vector (default `word_vector`);
    either may return an LLMError to raise.
    """

    supports_json_schema = True
    scores_continuations = True
    embeds = True
    grammar_json = False  # stands in for an HTTP server
    max_concurrency: int | None = None
    token_logprobs = True  # a text reply gets certain tokens (see fake_token_logprobs)

    def __init__(
        self,
        replies: Iterable[Reply] | ReplyFn | None = None,
        *,
        name: str = "fake",
        latency: float = 0.0,
        record_calls: bool = True,
        logprobs: LogprobsFn | None = None,
        embed: EmbedFn | None = None,
    ) -> None:
        self.identity = f"fake:{name}"
        self._logprobs = logprobs or word_logprobs
        self._embed = embed or word_vector
        self.latency = latency
        self.calls: list[Request] = []
        self.record_calls = record_calls
        self._fn: ReplyFn | None = None
        self._script: list[Reply] = []
        if callable(replies):
            self._fn = replies
        elif replies is not None:
            self._script = list(replies)
        else:
            self._fn = _echo

    @classmethod
    def from_spec(cls, spec: str) -> "FakeBackend":
        """`fake` or `fake:echo` echoes the last user message (a minimal JSON object when a
        schema is asked for)."""
        kind = spec.partition(":")[2] or "echo"
        if kind == "echo":  # used from the CLI: keep no history, memory stays flat
            return cls(_echo, name="echo", record_calls=False)
        raise UserError(f"unknown fake model {spec!r}; use 'fake:echo'")

    async def complete(self, request: Request) -> Completion:
        if self.record_calls:
            self.calls.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._fn is not None:
            reply = self._fn(request)
            if inspect.isawaitable(reply):
                reply = await reply
        else:
            if not self._script:
                raise AssertionError("FakeBackend has no scripted replies")
            reply = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        if isinstance(reply, LLMError):
            raise reply
        if isinstance(reply, Completion):
            return reply
        text = str(reply)
        return Completion(
            text=text,
            finish_reason="stop",
            prompt_tokens=sum(len(m["content"].split()) for m in request.messages),
            completion_tokens=len(text.split()),
            token_logprobs=(fake_token_logprobs(text)
                            if request.top_logprobs is not None else None),
        )

    async def aclose(self) -> None:
        return None

    async def continuation_logprobs(self, request: ContinuationRequest) -> Completion:
        return await self._measure(request, self._logprobs(request), "token_logprobs")

    async def embed(self, request: EmbeddingRequest) -> Completion:
        return await self._measure(request, self._embed(request), "embedding")

    async def _measure(self, request: ContinuationRequest | EmbeddingRequest,
                       values: list[float] | LLMError, what: str) -> Completion:
        if self.record_calls:
            self.calls.append(request)  # type: ignore[arg-type]
        if self.latency:
            await asyncio.sleep(self.latency)
        if isinstance(values, LLMError):
            raise values
        return Completion(text="", prompt_tokens=len(values), extra={what: list(values)})


def word_logprobs(request: ContinuationRequest) -> list[float]:
    """One token per word of the continuation: -1.0 for a word that occurs in the prompt's
    messages, else -2.0 (so an instruction that the reply echoes makes the reply likelier,
    and IFD = mean with the instruction / mean without it can be worked out by hand)."""
    seen = {w.lower() for m in request.messages for w in m["content"].split()}
    return [-1.0 if w.lower() in seen else -2.0 for w in request.continuation.split()]


def word_vector(request: EmbeddingRequest, dims: int = 16) -> list[float]:
    """A unit bag-of-words vector (each word hashed to one of `dims` axes)."""
    vector = [0.0] * dims
    for word in request.text.lower().split():
        vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


_FAKE_TOKEN = re.compile(r"\d|\s+|\w+|[^\w\s]")


def fake_token_logprobs(text: str,
                        digits: Sequence[Mapping[str, float]] = ()) -> tuple[TokenLogprob, ...]:
    """Token log-probabilities for `text` as a scripted judge would give them: one token per
    digit, word, space run or punctuation mark, each certain (log-probability 0), except the
    k-th digit token, whose alternatives are `digits[k]` (token -> probability; the sampled
    digit is the written one). E.g. fake_token_logprobs("4", [{"4": 0.5, "3": 0.5}])."""
    out = []
    k = 0
    for token in _FAKE_TOKEN.findall(text):
        top: tuple[tuple[str, float], ...] = ((token, 0.0),)
        logprob = 0.0
        if token.isdigit() and k < len(digits):
            probs = digits[k]
            top = tuple(sorted(((t, math.log(p)) for t, p in probs.items() if p > 0),
                               key=lambda t: -t[1]))
            logprob = math.log(probs[token]) if probs.get(token) else -100.0
        if token.isdigit():
            k += 1
        out.append(TokenLogprob(token, logprob, top))
    return tuple(out)


def logprob_reply(text: str, digits: Sequence[Mapping[str, float]]) -> Completion:
    """A scripted reply carrying `fake_token_logprobs(text, digits)`."""
    return Completion(text=text, completion_tokens=len(text.split()),
                      token_logprobs=fake_token_logprobs(text, digits))


def _echo(request: Request) -> str:
    if request.json_schema is not None:
        return json.dumps(_minimal_instance(request.json_schema))
    return "echo: " + request.messages[-1]["content"]


def _minimal_instance(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _minimal_instance(schema["anyOf"][0])
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _minimal_instance(v) for k, v in props.items()}
    if kind == "array":
        return [_minimal_instance(schema.get("items", {}))] * schema.get("minItems", 0)
    return {"string": "x", "integer": 0, "number": 0, "boolean": False}.get(kind)
