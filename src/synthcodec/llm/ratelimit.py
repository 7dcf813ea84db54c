"""What a server says about its rate limits: `Retry-After`, `x-ratelimit-*` headers and 429 bodies.

OpenAI (and servers that copy it) send, on every response::

    x-ratelimit-limit-requests: 500        x-ratelimit-limit-tokens: 30000
    x-ratelimit-remaining-requests: 499    x-ratelimit-remaining-tokens: 29000
    x-ratelimit-reset-requests: 120ms      x-ratelimit-reset-tokens: 2s

where "reset" is the time until the bucket is full again (a Go-style duration such as
`6m0s`, `1.5s`, `20ms`, or plain seconds). A 429 body names which limit was hit
(`"type": "tokens"` / "tokens per min (TPM)" versus requests). The client's pacer
(`llm.pacing.Pacer`) learns a send rate from these; backends only parse them.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_TOKENS_MESSAGE = re.compile(r"tokens per min|\bTPM\b|tokens per day|\bTPD\b", re.IGNORECASE)


def parse_duration(value: str | None) -> float | None:
    """Seconds from `6m0s`, `1h2m3.5s`, `20ms`, `1.5s` or a plain number; None if unreadable."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class LimitState:
    """One limit (requests or tokens) as the server reported it."""

    limit: float | None
    remaining: float | None
    reset: float | None  # seconds until the bucket is full again

    def refill_rate(self) -> float | None:
        """Units per second the server refills at, from what is used and when it is full."""
        if self.limit is None or self.reset is None or self.reset <= 0:
            return None
        used = self.limit - (self.remaining if self.remaining is not None else 0.0)
        if used <= 0:
            return None
        return used / self.reset

    @property
    def low(self) -> bool:
        """Nearly used up: worth pacing before the server starts answering 429."""
        return (self.limit is not None and self.remaining is not None
                and self.remaining < max(2.0, 0.1 * self.limit))


@dataclass(frozen=True)
class RateLimitInfo:
    requests: LimitState | None = None
    tokens: LimitState | None = None


_HEADERS = {kind: tuple(f"x-ratelimit-{what}-{kind}" for what in ("limit", "remaining", "reset"))
            for kind in ("requests", "tokens")}


def parse_ratelimit_headers(headers: Any) -> RateLimitInfo | None:
    """`x-ratelimit-*` headers (case-insensitive mapping) → RateLimitInfo, or None if absent."""
    states: dict[str, LimitState | None] = {}
    for kind, (limit_name, remaining_name, reset_name) in _HEADERS.items():
        raw = (headers.get(limit_name), headers.get(remaining_name), headers.get(reset_name))
        if raw == (None, None, None):  # every reply of a server that sends none: no parsing
            states[kind] = None
            continue
        limit, remaining, reset = _number(raw[0]), _number(raw[1]), parse_duration(raw[2])
        states[kind] = (LimitState(limit, remaining, reset)
                        if (limit, remaining, reset) != (None, None, None) else None)
    if states["requests"] is None and states["tokens"] is None:
        return None
    return RateLimitInfo(requests=states["requests"], tokens=states["tokens"])


def limit_kind(body: bytes | str, info: RateLimitInfo | None = None) -> str:
    """Which limit a 429 is about: "tokens" (TPM) or "requests" (the default)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if isinstance(error, dict):
        if error.get("type") == "tokens":
            return "tokens"
        if error.get("type") == "requests":
            return "requests"
        text = str(error.get("message") or text)
    if _TOKENS_MESSAGE.search(text):
        return "tokens"
    if info is not None and info.tokens is not None and info.tokens.remaining == 0 and not (
            info.requests is not None and info.requests.remaining == 0):
        return "tokens"
    return "requests"


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())
