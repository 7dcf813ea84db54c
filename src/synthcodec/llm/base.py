"""The one contract every model backend implements: a chat request in, a completion out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Request:
    """A fully rendered chat request. Everything that changes the answer is in here."""

    messages: tuple[dict[str, str], ...]
    temperature: float = 0.0
    max_tokens: int = 512
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    json_schema: dict[str, Any] | None = None
    # Distinguishes n samples of the same prompt at temperature > 0; also seeds them.
    sample: int = 0
    # Ask for the k most likely tokens (with log-probabilities) at each generated position:
    # scores read as a probability-weighted mean (synthcodec.judging.expected_score). None: not asked.
    top_logprobs: int | None = None

    @staticmethod
    def chat(
        user: str, *, system: str | None = None, **params: Any
    ) -> "Request":
        """Build a request from a user message and an optional system message."""
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": user})
        return Request(messages=tuple(messages), **params)

    def canonical(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies, which showed up in profiles.
        return {
            "messages": [dict(m) for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "stop": list(self.stop) if self.stop else None,
            "json_schema": self.json_schema,
            "sample": self.sample,
            **self._logprob_fields(),
        }

    def _logprob_fields(self) -> dict[str, Any]:
        # Only when asked, so every request that asks for none keeps the cache key it had.
        return {} if self.top_logprobs is None else {"top_logprobs": self.top_logprobs}

    def estimated_prompt_tokens(self) -> float:
        """A generous guess before sending (the pacer's token rate, the budget's worst case):
        4 characters a token, plus a little per message."""
        characters = 0
        for message in self.messages:  # a loop, not sum() over a generator: every request
            characters += len(message["content"])
        return characters / 4 + 4 * len(self.messages)

    def seed(self) -> int:
        """A reproducible per-request seed derived from the request itself."""
        blob = json.dumps(self.canonical(), sort_keys=True).encode()
        return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, its log-probability, and the most likely tokens at
    its position (`top`: (text, log-probability) pairs, most likely first)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()

    def as_list(self) -> list[Any]:
        """Plain JSON (the request cache stores it)."""
        return [self.token, self.logprob, [[t, lp] for t, lp in self.top]]

    @classmethod
    def from_list(cls, item: list[Any]) -> "TokenLogprob":
        token, logprob, top = item
        return cls(str(token), float(logprob), tuple((str(t), float(lp)) for t, lp in top))


@dataclass
class Completion:
    """A reply. From `LLMClient.complete` on, `text` is the answer only and `reasoning` the
    model's trace, if it sent one (llm/reasoning.py); a backend returns the raw reply."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    reasoning: str = ""
    # Per generated token, when the request asked for top_logprobs and the backend gave them.
    token_logprobs: tuple[TokenLogprob, ...] | None = None


class LLMError(Exception):
    """A model call failed."""


class TransientError(LLMError):
    """Worth retrying: 408/409/429/5xx, timeouts, dropped connections, malformed bodies."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 connect: bool = False, limit_kind: str = "requests", ratelimit: Any = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.connect = connect  # no connection at all (refused, unknown host)
        # For 429s: which limit was hit ("requests" or "tokens") and what the server said
        # about its limits (llm.ratelimit.RateLimitInfo from x-ratelimit-* headers), if anything.
        self.limit_kind = limit_kind
        self.ratelimit = ratelimit

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


class PermanentError(LLMError):
    """Not worth retrying (other 4xx: bad request, auth, unknown model)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@runtime_checkable
class Backend(Protocol):
    """A model. `identity` names model + endpoint for the cache key (never a secret).

    Capabilities are attributes, so callers never ask which class a backend is:
    `supports_json_schema`: it can be sent a request's JSON schema at all;
    `grammar_json`: it enforces that schema as a grammar while decoding (llama.cpp), so even
    a tiny model answers in format, and judges default to JSON answers for it;
    `max_concurrency`: the requests it can use at once (None: no limit of its own, the
    client's default applies).
    Optional, read with getattr (default False): `token_logprobs`, it can return the top
    log-probabilities of generated tokens (Request.top_logprobs); see `gives_token_logprobs`.
    """

    identity: str
    supports_json_schema: bool
    grammar_json: bool
    max_concurrency: int | None

    async def complete(self, request: Request) -> Completion: ...

    async def aclose(self) -> None: ...


# --- Measuring given text (IFD, embeddings): requests that generate nothing ---------------
# A backend that can answer them says so with a capability attribute (`scores_continuations`,
# `embeds`); LLMClient sends them through the same cache, limits and retry loop as chat
# requests (LLMClient.continuation_logprobs / .embedding).


@dataclass(frozen=True)
class ContinuationRequest:
    """The log-probability of each token of `continuation` written as the assistant's reply
    after `messages`, with the model's chat template applied as for generation (the reply
    starts where the generation prompt ends)."""

    messages: tuple[dict[str, str], ...]
    continuation: str
    temperature = 0.0  # nothing is sampled: the same request always gives the same answer
    max_tokens = 1  # what the pacer and a budget reserve for it (a server may decode one)

    def canonical(self) -> dict[str, Any]:
        return {"continuation_logprobs": self.continuation,
                "messages": [dict(m) for m in self.messages]}

    def estimated_prompt_tokens(self) -> float:
        text = sum(len(m["content"]) for m in self.messages) + len(self.continuation)
        return text / 4 + 4 * (len(self.messages) + 1)


@dataclass(frozen=True)
class EmbeddingRequest:
    """One embedding vector of `text`."""

    text: str
    temperature = 0.0
    max_tokens = 0

    def canonical(self) -> dict[str, Any]:
        return {"embedding": self.text}

    def estimated_prompt_tokens(self) -> float:
        return len(self.text) / 4 + 1


def gives_token_logprobs(backend: Any) -> bool:
    """Whether `backend` can return the log-probabilities of generated tokens (a capability
    attribute, False where a backend does not declare it)."""
    return bool(getattr(backend, "token_logprobs", False))


def chat_token_logprobs(logprobs: Any) -> tuple[TokenLogprob, ...] | None:
    """A chat completion choice's `logprobs` ({"content": [{token, logprob, top_logprobs:
    [{token, logprob}]}]}, the shape OpenAI, vLLM, SGLang and llama.cpp all use) as
    TokenLogprobs; None when the reply carries none or they cannot be read."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    out = []
    try:
        for item in content:
            top = sorted(((str(t["token"]), float(t["logprob"]))
                          for t in item.get("top_logprobs") or ()), key=lambda t: -t[1])
            out.append(TokenLogprob(str(item["token"]), float(item["logprob"]), tuple(top)))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return tuple(out)
