"""A local mock OpenAI-compatible chat-completions server for benchmarks and fault injection.

Test and benchmark code only (it is not part of the installed package). One module,
although long: the server, its fault knobs and the subprocess helpers are one tool and
are read together.

In-process::

    async with MockServer(latency=0.2, fail_first=2) as server:
        client_base_url = server.base_url          # http://127.0.0.1:PORT/v1

As a subprocess::

    python tests/mock_server.py --port 0 --latency 0.2
    # prints exactly one line "READY http://127.0.0.1:PORT/v1" once listening

    with serve_in_subprocess(latency=0.2) as (proc, base_url):
        ...

Every fault is count-based on the 1-based arrival number of chat-completion requests, so
runs are reproducible; the only randomness (``fail_rate``) comes from a seeded RNG. The
per-prompt faults (``fail_hash_rate``, ``invalid_json_first_rate``, ``truncate_rate``) are
chosen by a hash of the prompt (the first user message) and, where it matters, the attempt
number of that prompt, so they hit the same prompts whatever the arrival order;
``hash_fraction`` lets a test or benchmark compute which prompts they hit.

Workloads from the benchmarks (see benchmarks/bench_pacing.py):

- W3, a server rate limit learned by the client: ``rate_limit_rps=10, rate_limit_burst=10,
  retry_after_style="seconds", latency=0.05, fail_hash_rate=0.05``.
- W7, JSON output: ``reply_json_in_prompt=True, invalid_json_first_rate=0.1,
  truncate_rate=0.02``.
The batch API (``/v1/files``, ``/v1/batches``, OpenAI's shapes) is there too, for
``--batch``: ``batch_polls`` (retrievals a batch stays in progress), ``batch_expire_first``
(the first N batches expire half done), ``batch_fail_rate`` (requests failing with 500
inside a batch); ``stats()`` counts files, batches, polls and batch requests.
The request path does no per-request logging and only light work, so a 2-core machine can
drive thousands of concurrent slow requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import ipaddress
import json
import math
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web

__all__ = [
    "DEFAULT_MODEL",
    "MockServer",
    "Responder",
    "ServerRateLimit",
    "build_arg_parser",
    "default_reply",
    "estimate_tokens",
    "hash_fraction",
    "main",
    "schema_instance",
    "serve_in_subprocess",
    "start_subprocess",
]

DEFAULT_MODEL = "mock-model"

# A responder maps the parsed request body to the reply text; it may be sync or async.
Responder = Callable[[dict[str, Any]], str | Awaitable[str]]

_JSON_HEADERS = {"Content-Type": "application/json"}

_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", "request_timeout"),
    409: ("conflict", "conflict"),
    429: ("requests", "rate_limit_exceeded"),
}


# --------------------------------------------------------------------------------------
# Reply text helpers
# --------------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Cheap token estimate (about four characters per token)."""
    return len(text) // 4 + 1


def _content_text(content: Any) -> str:
    """Flatten a message ``content`` (a string or a list of typed parts) to plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    return "" if content is None else str(content)


def _resolve_ref(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Resolve a local JSON pointer like ``#/$defs/Item`` (pydantic emits these)."""
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, Mapping) else {}


def schema_instance(
    schema: Mapping[str, Any] | bool,
    root: Mapping[str, Any] | None = None,
    _depth: int = 0,
) -> Any:
    """Return a minimal value that validates against ``schema``.

    Handles object/properties/required (required properties only), string (minLength),
    integer/number (minimum/exclusiveMinimum), boolean, null, array (items/minItems),
    enum, const, local ``$ref`` and the first branch of anyOf/oneOf/allOf.
    """
    if not isinstance(schema, Mapping):
        return None
    if root is None:
        root = schema
    if _depth > 32:  # a recursive $ref must not recurse forever
        return None
    if "$ref" in schema:
        return schema_instance(_resolve_ref(str(schema["$ref"]), root), root, _depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            return schema_instance(branches[0], root, _depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        # Prefer a concrete type over null so the answer carries some shape.
        concrete = [k for k in kind if k != "null"]
        kind = concrete[0] if concrete else "null"
    if kind is None:
        if "properties" in schema or "required" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"

    if kind == "object":
        props = schema.get("properties") or {}
        out: dict[str, Any] = {}
        for name in schema.get("required") or []:
            out[name] = schema_instance(props.get(name, {}), root, _depth + 1)
        return out
    if kind == "array":
        count = int(schema.get("minItems") or 0)
        items = schema.get("items")
        if isinstance(items, list):  # draft-4 tuple form
            values = [schema_instance(s, root, _depth + 1) for s in items]
            return values + [None] * max(0, count - len(values))
        return [schema_instance(items or {}, root, _depth + 1) for _ in range(count)]
    if kind == "string":
        return "x" * int(schema.get("minLength") or 0)
    if kind in ("integer", "number"):
        value: float = 0
        if "minimum" in schema:
            value = schema["minimum"]
        elif "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            value = schema["exclusiveMinimum"] + 1
        elif "maximum" in schema and schema["maximum"] < 0:
            value = schema["maximum"]
        if kind == "integer":
            return int(math.ceil(value))
        return value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return None


def _response_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Extract a JSON schema from an OpenAI- or llama.cpp-style ``response_format``."""
    fmt = body.get("response_format")
    if not isinstance(fmt, Mapping):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        if isinstance(spec, Mapping) and isinstance(spec.get("schema"), Mapping):
            return spec["schema"]
    elif fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), Mapping):
        return fmt["schema"]
    return None


def default_reply(body: Mapping[str, Any]) -> str:
    """Deterministic reply: a schema instance if one was asked for, else an echo."""
    schema = _response_schema(body)
    if schema is not None:
        return json.dumps(schema_instance(schema), separators=(",", ":"))
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
        return "{}"
    last_user = ""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            last_user = _content_text(message.get("content"))
            break
    return "echo: " + last_user[:200]


def prompt_logprobs(messages: list[Any]) -> list[Any]:
    """vLLM's `prompt_logprobs` for a prompt of each message's role then its words (one
    token a word, the role standing in for a chat template): -1.0 for a word seen earlier
    in the prompt, else -2.0 (FakeBackend.word_logprobs' rule)."""
    out: list[Any] = []
    seen: set[str] = set()
    for m in messages:
        for word in [str(m.get("role")), *_content_text(m.get("content")).split()]:
            out.append(None if not out else {str(len(out)): {
                "logprob": -1.0 if word.lower() in seen else -2.0, "rank": 1,
                "decoded_token": " " + word}})
            seen.add(word.lower())
    return out


_LOGPROB_TOKEN = re.compile(r"\d|\s+|\w+|[^\w\s]")


def chat_logprobs(text: str, top: int) -> dict[str, Any]:
    """OpenAI's `logprobs` object for `text`, asked with logprobs=true: one token per digit,
    word, space run or punctuation mark. A digit d was sampled with probability 0.6, beside
    d-1 and d+1 at 0.2 each (those that are digits); every other token is certain. At most
    `top` alternatives per token, most likely first."""
    content = []
    for token in _LOGPROB_TOKEN.findall(text):
        if token.isdigit():
            d = int(token)
            alternatives = [(token, 0.6)] + [(str(v), 0.2) for v in (d - 1, d + 1) if 0 <= v <= 9]
        else:
            alternatives = [(token, 1.0)]
        content.append({"token": token, "logprob": math.log(alternatives[0][1]), "bytes": None,
                        "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None}
                                         for t, p in alternatives[:top]]})
    return {"content": content, "refusal": None}


def hash_fraction(*parts: object) -> float:
    """A number in [0, 1) from a hash of ``parts``: which prompts a per-prompt fault hits."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _first_user_text(body: Mapping[str, Any]) -> str:
    for message in body.get("messages") or []:
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


_JSON_IN_PROMPT = re.compile(r"\{[^{}]*\}")
INVALID_JSON_REPLY = "Sure! Here is the rating: {score: 3,}"


def _json_in_prompt(prompt: str) -> str | None:
    """The first JSON object written in the prompt, compactly re-serialised."""
    for match in _JSON_IN_PROMPT.finditer(prompt):
        try:
            return json.dumps(json.loads(match.group(0)))
        except ValueError:
            continue
    return None


_SCHEMA_AT_END = re.compile(r"JSON Schema[^\n]*\n(\{.*\})\s*$", re.DOTALL)


def _schema_in_prompt_reply(body: Mapping[str, Any]) -> str | None:
    """An instance of the JSON Schema written at the end of the last message, if any."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
    match = _SCHEMA_AT_END.search(_content_text(messages[-1].get("content"))) if messages else None
    if match is None:
        return None
    try:
        schema = json.loads(match.group(1))
    except ValueError:
        return None
    return json.dumps(schema_instance(schema), separators=(",", ":"))


# --------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------


class ServerRateLimit:
    """The server's own limit (answers 429 when empty): ``rate`` tokens per second, holding at
    most ``burst``. Not the client's pacer (``synthcodec.llm.pacing.TokenBucket``, which
    waits): this one never waits, it says how long until a token is there."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Take one token; return 0.0 on success, else seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def reset(self) -> None:
        self.tokens = self.burst
        self.stamp = time.monotonic()


# --------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    """Refuse to bind anything reachable from outside this machine."""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"mock server only binds loopback addresses, not {host!r}")


def _json_response(payload: Any) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), headers=_JSON_HEADERS)


def _error_body(status: int, message: str) -> bytes:
    kind, code = _ERROR_KINDS.get(status, ("server_error", "server_error"))
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(payload).encode()


class MockServer:
    """An OpenAI-compatible chat-completions server with deterministic fault injection.

    Use ``await start()`` / ``await stop()``, or ``async with MockServer(...) as server``.
    Fault counters use the 1-based arrival number ``n`` of chat-completion requests; when
    several faults match, the first in this order wins: auth (401), ``status_for_model``,
    rate limit (429), ``fail_first``, ``fail_every``, ``fail_rate``, ``fail_hash_rate``,
    ``hang_every``, ``malformed_every``, ``truncate_every`` / ``truncate_rate``. Error replies
    are sent without ``latency``.

    Rate limit: a token bucket of ``rate_limit_burst`` refilled at ``rate_limit_rps``; a
    request without a token gets 429 with an OpenAI-style ``rate_limit_exceeded`` body and,
    by ``retry_after_style``, ``Retry-After`` (whole seconds) plus ``retry-after-ms``
    ("precise"), ``Retry-After`` only ("seconds"), or neither ("none").
    ``ratelimit_headers`` adds OpenAI's ``x-ratelimit-{limit,remaining,reset}-requests`` to
    every response. Per prompt: ``fail_hash_rate`` answers 500 or 503 to that fraction of
    admitted attempts (by a hash of prompt + attempt number); ``reply_json_in_prompt``
    answers with the JSON object written in the prompt (e.g. ``{"score": 4}``);
    ``invalid_json_first_rate`` of prompts get ``Sure! Here is the rating: {score: 3,}`` on
    their first admitted attempt only; ``truncate_rate`` of prompts are cut in half with
    ``finish_reason: "length"`` on every attempt. ``max_concurrency`` (K) lets at most K
    requests spend their ``latency`` at once and queues the rest, like one GPU serving a
    batch of K: throughput is capped at K / latency. ``omit_usage`` sends replies without
    a ``usage`` object. ``echo_auth_status`` answers that status to every chat request,
    quoting its ``Authorization`` header in the error message. ``reject_response_format``
    answers 400 to any request with a ``response_format`` and follows a JSON Schema written
    at the end of the prompt instead. ``error_in_200`` answers every chat request with
    HTTP 200 and an ``{"error": {...}}`` body.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = DEFAULT_MODEL,
        latency: float = 0.0,
        rate_limit_rps: float | None = None,
        rate_limit_burst: float | None = None,
        fail_first: int = 0,
        fail_every: int = 0,
        fail_status: int = 503,
        fail_retry_after: float | None = None,
        fail_rate: float = 0.0,
        seed: int | None = None,
        hang_every: int = 0,
        hang_seconds: float = 3600.0,
        malformed_every: int = 0,
        truncate_every: int = 0,
        require_api_key: str | None = None,
        status_for_model: Mapping[str, int] | None = None,
        responder: Responder | None = None,
        retry_after_style: str = "precise",
        ratelimit_headers: bool = False,
        fail_hash_rate: float = 0.0,
        reply_json_in_prompt: bool = False,
        invalid_json_first_rate: float = 0.0,
        truncate_rate: float = 0.0,
        max_concurrency: int = 0,
        batch_polls: int = 1,
        batch_expire_first: int = 0,
        batch_fail_rate: float = 0.0,
        omit_usage: bool = False,
        echo_auth_status: int = 0,
        reject_response_format: bool = False,
        error_in_200: bool = False,
    ) -> None:
        _check_loopback(host)
        self.host = host
        self.port = port
        self.model = model
        self.latency = float(latency)
        self.rate_limit_rps = rate_limit_rps
        self.rate_limit_burst = rate_limit_burst
        self.fail_first = int(fail_first)
        self.fail_every = int(fail_every)
        self.fail_status = int(fail_status)
        self.fail_retry_after = fail_retry_after
        self.fail_rate = float(fail_rate)
        self.seed = seed
        self.hang_every = int(hang_every)
        self.hang_seconds = float(hang_seconds)
        self.malformed_every = int(malformed_every)
        self.truncate_every = int(truncate_every)
        self.require_api_key = require_api_key
        self.status_for_model: dict[str, int] = (
            {"bad-request": 400} if status_for_model is None else dict(status_for_model)
        )
        self.responder = responder
        if retry_after_style not in ("precise", "seconds", "none"):
            raise ValueError("retry_after_style must be precise, seconds or none, "
                             f"not {retry_after_style!r}")
        self.retry_after_style = retry_after_style
        self.ratelimit_headers = bool(ratelimit_headers)
        self.fail_hash_rate = float(fail_hash_rate)
        self.reply_json_in_prompt = bool(reply_json_in_prompt)
        self.invalid_json_first_rate = float(invalid_json_first_rate)
        self.truncate_rate = float(truncate_rate)
        # A "GPU": at most this many requests spend their `latency` at once; the rest queue
        # (so throughput is max_concurrency / latency however many are sent). 0: no cap.
        self.max_concurrency = int(max_concurrency)
        self._slots = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency > 0 else None
        # The batch API (/v1/files, /v1/batches): see _handle_batch_get.
        self.batch_polls = int(batch_polls)
        self.batch_expire_first = int(batch_expire_first)
        self.batch_fail_rate = float(batch_fail_rate)
        # Servers that send no `usage` object (some proxies, older local servers).
        self.omit_usage = bool(omit_usage)
        # A server that answers this status to every chat request, quoting the request's
        # Authorization header in the error message (as some proxies' error pages do).
        self.echo_auth_status = int(echo_auth_status)
        # A server that takes no response_format (400 naming it); it follows a JSON Schema
        # written at the end of the prompt instead, as an instruction-following model would.
        self.reject_response_format = bool(reject_response_format)
        # A proxy that answers HTTP 200 with an OpenAI-style error object instead of a reply.
        self.error_in_200 = bool(error_in_200)
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._per_prompt = bool(self.fail_hash_rate or self.invalid_json_first_rate
                                or self.truncate_rate)

        self._bucket = ServerRateLimit(rate_limit_rps, rate_limit_burst) if rate_limit_rps else None
        # Seeded even without an explicit seed so that fail_rate runs are reproducible.
        self._rng = random.Random(0 if seed is None else seed)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.base_url: str | None = None
        self._reset_counters()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> str:
        """Start listening and return the base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._runner is not None:
            assert self.base_url is not None
            return self.base_url
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/files", self._handle_file_upload)
        app.router.add_get("/v1/files/{file_id}/content", self._handle_file_content)
        app.router.add_post("/v1/batches", self._handle_batch_create)
        app.router.add_get("/v1/batches", self._handle_batch_list)
        app.router.add_get("/v1/batches/{batch_id}", self._handle_batch_get)
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_post("/stats/reset", self._handle_stats_reset)
        self._closing = asyncio.Event()
        # access_log=None: per-request logging would dominate CPU in benchmarks.
        # handler_cancellation: a client that gives up on a hung request frees its handler.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self._runner = runner
        sockname = runner.addresses[0]
        self.port = int(sockname[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{self.port}/v1"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; hung requests are released first so shutdown is quick."""
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> "MockServer":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- statistics ------------------------------------------------------------------

    def _reset_counters(self) -> None:
        self._n = 0  # arrival number of the last chat-completion request
        self._in_flight = 0
        self._max_in_flight = 0
        self._completed = 0
        self._by_status: dict[int, int] = {}
        self._faults: dict[str, int] = {}
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._latency_sum = 0.0
        self._latency_max = 0.0
        self._started = time.monotonic()
        self._attempts: dict[str, int] = {}  # admitted attempts per prompt (per-prompt faults)
        self._batch_counts = {"files_uploaded": 0, "batches_created": 0, "batch_polls": 0,
                              "batch_requests": 0, "batches_expired": 0,
                              "batch_requests_failed": 0}
        self._custom_attempts: dict[str, int] = {}  # times each custom_id was in a batch
        if getattr(self, "_bucket", None) is not None:
            self._bucket.reset()  # type: ignore[union-attr]

    def reset_stats(self) -> None:
        """Zero all counters, including the arrival number that drives fault injection."""
        in_flight = getattr(self, "_in_flight", 0)
        self._reset_counters()
        # Requests still running will decrement on exit; keep the gauge consistent.
        self._in_flight = in_flight
        self._max_in_flight = in_flight

    def stats(self) -> dict[str, Any]:
        """A fixed-size summary of traffic so far (no per-request lists)."""
        done = max(1, self._completed)
        return {
            "total_requests": self._n,
            "completed": self._completed,
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
            "faults": dict(sorted(self._faults.items())),
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._completion_tokens,
            "mean_handler_seconds": self._latency_sum / done,
            "max_handler_seconds": self._latency_max,
            "uptime_seconds": time.monotonic() - self._started,
            **self._batch_counts,
        }

    def _fault(self, name: str) -> None:
        self._faults[name] = self._faults.get(name, 0) + 1

    # ---- handlers --------------------------------------------------------------------

    async def _handle_models(self, request: web.Request) -> web.Response:
        payload = {
            "object": "list",
            "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "mock"}],
        }
        return web.Response(body=json.dumps(payload).encode(), headers=_JSON_HEADERS)

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(self.stats()).encode(), headers=_JSON_HEADERS)

    async def _handle_stats_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.Response(body=b'{"ok":true}', headers=_JSON_HEADERS)

    def _error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        all_headers = dict(_JSON_HEADERS)
        if headers:
            all_headers.update(headers)
        return web.Response(status=status, body=_error_body(status, message), headers=all_headers)

    @staticmethod
    def _retry_headers(seconds: float, style: str = "precise") -> dict[str, str]:
        # Retry-After only carries whole seconds; retry-after-ms keeps the precise value.
        if style == "none":
            return {}
        headers = {"Retry-After": str(max(1, math.ceil(seconds)))}
        if style == "precise":
            headers["retry-after-ms"] = str(max(1, int(seconds * 1000)))
        return headers

    def _limit_headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-*-requests for the bucket as it is now (empty if disabled)."""
        bucket = self._bucket
        if not self.ratelimit_headers or bucket is None:
            return {}
        tokens = max(0.0, min(bucket.burst, bucket.tokens + (time.monotonic() - bucket.stamp)
                              * bucket.rate))
        reset_ms = max(0, int((bucket.burst - tokens) / bucket.rate * 1000))
        return {
            "x-ratelimit-limit-requests": str(int(bucket.burst)),
            "x-ratelimit-remaining-requests": str(int(tokens)),
            "x-ratelimit-reset-requests": f"{reset_ms}ms",
        }

    async def _completion(self, body: dict[str, Any], n: int, prompt: str,
                          attempt: int) -> dict[str, Any]:
        """The chat.completion object answering ``body`` (reply text, truncation, usage)."""
        model = str(body.get("model") or self.model)
        if self.responder is not None:
            result = self.responder(body)
            text = await result if inspect.isawaitable(result) else result
            text = str(text)
        else:
            asked = _json_in_prompt(_first_user_text(body)) if self.reply_json_in_prompt else None
            if asked is None and self.reject_response_format:
                asked = _schema_in_prompt_reply(body)
            text = asked if asked is not None else default_reply(body)

        finish_reason = "stop"
        if self.truncate_every > 0 and n % self.truncate_every == 0:
            self._fault("truncate")
            text = text[: len(text) // 2]
            finish_reason = "length"
        elif self.truncate_rate > 0 and hash_fraction("truncate", prompt) < self.truncate_rate:
            self._fault("truncate")
            text = text[: len(text) // 2 + 1]  # '{"score": 4}' -> '{"score'
            finish_reason = "length"
        elif (self.invalid_json_first_rate > 0 and attempt == 1
              and hash_fraction("invalid", prompt) < self.invalid_json_first_rate):
            self._fault("invalid_json")
            text = INVALID_JSON_REPLY

        prompt_tokens = sum(
            estimate_tokens(_content_text(m.get("content")))
            for m in body["messages"]
            if isinstance(m, dict)
        )
        completion_tokens = estimate_tokens(text)
        self._prompt_tokens += prompt_tokens
        self._completion_tokens += completion_tokens

        payload = {
            "id": f"chatcmpl-mock-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "mock",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": (chat_logprobs(text, int(body.get("top_logprobs") or 1))
                                 if body.get("logprobs") else None),
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if self.omit_usage:
            del payload["usage"]
        if body.get("prompt_logprobs") is not None:  # vLLM's extension (IFD)
            payload["prompt_logprobs"] = prompt_logprobs(body["messages"])
        return payload

    # ---- batch API -------------------------------------------------------------------
    # OpenAI's shapes: a JSONL input file of {"custom_id", "method", "url", "body"} lines is
    # uploaded (multipart, purpose=batch); a batch object names it and moves through
    # validating -> in_progress -> completed (or expired); its output file has a line
    # {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}
    # per answered request, its error file the failed ones (status_code >= 400, or
    # "error": {"code": "batch_expired"} for requests an expired batch never answered).
    # Knobs: ``batch_polls`` retrievals before a batch is done (in_progress until then);
    # the first ``batch_expire_first`` batches expire with only the first half answered;
    # ``batch_fail_rate`` of requests (by a hash of custom_id and how often it was in a
    # batch) fail with 500; ``status_for_model`` applies per request.

    def _batch_count(self, name: str, n: int = 1) -> None:
        self._batch_counts[name] += n

    async def _handle_file_upload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        content, purpose = b"", ""
        async for part in reader:
            if part.name == "file":
                content = await part.read()  # type: ignore[union-attr]
            elif part.name == "purpose":
                purpose = (await part.text())  # type: ignore[union-attr]
        if purpose != "batch" or not content:
            return self._error(400, "a file and purpose=batch are required")
        file_id = f"file-mock-{len(self._files) + 1}"
        self._files[file_id] = content
        self._batch_count("files_uploaded")
        return _json_response({"id": file_id, "object": "file", "bytes": len(content),
                               "created_at": int(time.time()), "filename": "batch.jsonl",
                               "purpose": "batch"})

    async def _handle_file_content(self, request: web.Request) -> web.Response:
        content = self._files.get(request.match_info["file_id"])
        if content is None:
            return self._error(404, "No such file.")
        return web.Response(body=content, content_type="application/octet-stream")

    async def _handle_batch_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        file_id = body.get("input_file_id")
        if file_id not in self._files:
            return self._error(400, f"No such input file {file_id!r}.")
        if body.get("endpoint") != "/v1/chat/completions":
            return self._error(400, "endpoint must be /v1/chat/completions")
        lines = [json.loads(x) for x in self._files[file_id].splitlines() if x.strip()]
        self._batch_count("batches_created")
        batch_id = f"batch_mock_{len(self._batches) + 1}"
        self._batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": None, "input_file_id": file_id, "completion_window": "24h",
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(time.time()), "metadata": body.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "_lines": lines, "_polls": 0, "_number": len(self._batches) + 1,
        }
        return _json_response(self._shown(batch_id))

    def _shown(self, batch_id: str) -> dict[str, Any]:
        return {k: v for k, v in self._batches[batch_id].items() if not k.startswith("_")}

    async def _handle_batch_list(self, request: web.Request) -> web.Response:
        data = [self._shown(b) for b in reversed(self._batches)]
        return _json_response({"object": "list", "data": data, "has_more": False})

    async def _handle_batch_get(self, request: web.Request) -> web.Response:
        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return self._error(404, "No such batch.")
        self._batch_count("batch_polls")
        if batch["status"] in ("validating", "in_progress"):
            batch["_polls"] += 1
            if batch["_polls"] > self.batch_polls:
                await self._run_batch(batch)
            else:
                batch["status"] = "in_progress"
                total = batch["request_counts"]["total"]
                batch["request_counts"]["completed"] = total * batch["_polls"] // (
                    self.batch_polls + 1)
        return _json_response(self._shown(batch["id"]))

    async def _run_batch(self, batch: dict[str, Any]) -> None:
        lines = batch.pop("_lines")
        expire = batch["_number"] <= self.batch_expire_first
        answered = lines[: len(lines) // 2] if expire else lines
        out, err = [], []
        for line in answered:
            custom_id = str(line.get("custom_id"))
            tries = self._custom_attempts[custom_id] = self._custom_attempts.get(custom_id, 0) + 1
            body = line.get("body") or {}
            self._batch_count("batch_requests")
            self._n += 1
            forced = self.status_for_model.get(str(body.get("model") or self.model))
            status = forced or (500 if self.batch_fail_rate > 0 and hash_fraction(
                "batchfail", custom_id, tries) < self.batch_fail_rate else 200)
            if status == 200:
                reply = await self._completion(body, self._n, _first_user_text(body), 1)
            else:
                reply = json.loads(_error_body(status, f"Injected batch failure ({status})."))
                self._batch_count("batch_requests_failed")
            entry = {"id": f"batch_req_{self._n}", "custom_id": custom_id, "error": None,
                     "response": {"status_code": status, "request_id": f"req_{self._n}",
                                  "body": reply}}
            (out if status == 200 else err).append(entry)
        for line in lines[len(answered):]:
            err.append({"id": f"batch_req_x{len(err)}", "custom_id": line.get("custom_id"),
                        "response": None, "error": {"code": "batch_expired", "message":
                                                    "This request could not be executed "
                                                    "before the completion window expired."}})
        if expire:
            self._batch_count("batches_expired")
        for kind, entries in (("output_file_id", out), ("error_file_id", err)):
            if entries:
                file_id = f"file-mock-{len(self._files) + 1}"
                self._files[file_id] = "".join(json.dumps(e) + "\n" for e in entries).encode()
                batch[kind] = file_id
        batch["status"] = "expired" if expire else "completed"
        batch["request_counts"].update(completed=len(out), failed=len(err))

    async def _handle_chat(self, request: web.Request) -> web.Response:
        self._n += 1
        n = self._n
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight
        t0 = time.monotonic()
        status = 0
        try:
            response = await self._chat(request, n)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = 499  # client went away (nginx convention)
            raise
        finally:
            self._in_flight -= 1
            self._completed += 1
            self._by_status[status] = self._by_status.get(status, 0) + 1
            elapsed = time.monotonic() - t0
            self._latency_sum += elapsed
            if elapsed > self._latency_max:
                self._latency_max = elapsed

    async def _chat(self, request: web.Request, n: int) -> web.Response:
        if self.echo_auth_status:
            self._fault("echo_auth")
            sent = request.headers.get("Authorization", "(none)")
            return self._error(self.echo_auth_status,
                               f"Request rejected; it carried 'Authorization: {sent}'.")
        if self.require_api_key is not None:
            if request.headers.get("Authorization", "") != f"Bearer {self.require_api_key}":
                self._fault("auth")
                return self._error(401, "Incorrect API key provided.")

        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return self._error(400, "Request body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error(400, "'messages' is a required property.")
        if body.get("stream"):
            return self._error(400, "Streaming is not supported by the mock server.")

        if self.error_in_200:
            self._fault("error_in_200")
            return _json_response({"error": {"message": "the backend is down for maintenance",
                                             "type": "server_error"}})
        if self.reject_response_format and "response_format" in body:
            self._fault("response_format")
            return self._error(400, "Unrecognized request argument supplied: response_format")

        model = str(body.get("model") or self.model)
        forced = self.status_for_model.get(model)
        if forced is not None:
            self._fault("status_for_model")
            return self._error(forced, f"Forced status {forced} for model {model!r}.")

        if self._bucket is not None:
            wait = self._bucket.take()
            if wait > 0:
                self._fault("rate_limit")
                limited = self._retry_headers(wait, self.retry_after_style)
                limited.update(self._limit_headers())
                return self._error(429, "Rate limit reached for requests; please retry later.",
                                   limited)

        prompt, attempt = "", 0
        if self._per_prompt:
            prompt = _first_user_text(body)
            attempt = self._attempts.get(prompt, 0) + 1
            self._attempts[prompt] = attempt

        fail = False
        if n <= self.fail_first:
            fail = True
            self._fault("fail_first")
        elif self.fail_every > 0 and n % self.fail_every == 0:
            fail = True
            self._fault("fail_every")
        elif self.fail_rate > 0 and self._rng.random() < self.fail_rate:
            fail = True
            self._fault("fail_rate")
        if fail:
            headers = (
                self._retry_headers(self.fail_retry_after)
                if self.fail_retry_after is not None
                else None
            )
            return self._error(self.fail_status, f"Injected failure on request {n}.", headers)
        if self.fail_hash_rate > 0:
            pick = hash_fraction("fail", prompt, attempt)
            if pick < self.fail_hash_rate:
                self._fault("fail_hash")
                status = 500 if pick < self.fail_hash_rate / 2 else 503
                return self._error(status, f"Injected failure on attempt {attempt} of a prompt.")

        if self.hang_every > 0 and n % self.hang_every == 0:
            self._fault("hang")
            assert self._closing is not None
            # Wait on the closing event rather than a bare sleep so stop() is not blocked.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.hang_seconds)
        elif self.latency > 0:
            if self._slots is not None:
                async with self._slots:
                    await asyncio.sleep(self.latency)
            else:
                await asyncio.sleep(self.latency)

        payload = await self._completion(body, n, prompt, attempt)
        raw = json.dumps(payload).encode()
        if self.malformed_every > 0 and n % self.malformed_every == 0:
            self._fault("malformed")
            raw = raw[: len(raw) // 2]  # cut mid-document: never parses
        limits = self._limit_headers()
        reply_headers = {**_JSON_HEADERS, **limits} if limits else _JSON_HEADERS
        return web.Response(body=raw, headers=reply_headers)


# --------------------------------------------------------------------------------------
# Command line and subprocess helpers
# --------------------------------------------------------------------------------------


def _parse_model_status(text: str) -> tuple[str, int]:
    name, sep, code = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected MODEL=STATUS, got {text!r}")
    return name, int(code)


def _flag(text: str) -> bool:
    """`--flag true|false` (so ``_options_to_argv`` can pass booleans as str(value))."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_arg_parser() -> argparse.ArgumentParser:
    """CLI flags mirror the ``MockServer`` constructor (underscores become dashes)."""
    p = argparse.ArgumentParser(
        prog="python tests/mock_server.py",
        description="Mock OpenAI-compatible chat-completions server with fault injection.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    p.add_argument("--rate-limit-rps", type=float, default=None)
    p.add_argument("--rate-limit-burst", type=float, default=None)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--fail-retry-after", type=float, default=None)
    p.add_argument("--fail-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--hang-every", type=int, default=0)
    p.add_argument("--hang-seconds", type=float, default=3600.0)
    p.add_argument("--malformed-every", type=int, default=0)
    p.add_argument("--truncate-every", type=int, default=0)
    p.add_argument("--require-api-key", default=None)
    p.add_argument("--retry-after-style", choices=("precise", "seconds", "none"),
                   default="precise")
    p.add_argument("--ratelimit-headers", type=_flag, default=False, metavar="BOOL")
    p.add_argument("--fail-hash-rate", type=float, default=0.0)
    p.add_argument("--reply-json-in-prompt", type=_flag, default=False, metavar="BOOL")
    p.add_argument("--invalid-json-first-rate", type=float, default=0.0)
    p.add_argument("--truncate-rate", type=float, default=0.0)
    p.add_argument("--max-concurrency", type=int, default=0,
                   help="requests served at once (the rest queue); 0 = no cap")
    p.add_argument("--batch-polls", type=int, default=1,
                   help="batch API: retrievals a batch stays in progress")
    p.add_argument("--batch-expire-first", type=int, default=0,
                   help="batch API: the first N batches expire with half their requests done")
    p.add_argument("--batch-fail-rate", type=float, default=0.0,
                   help="batch API: fraction of requests that fail with 500 inside a batch")
    p.add_argument("--omit-usage", type=_flag, default=False, metavar="BOOL",
                   help="send no `usage` object in replies")
    p.add_argument("--reject-response-format", type=_flag, default=False, metavar="BOOL",
                   help="answer 400 to any response_format; follow a schema in the prompt")
    p.add_argument("--error-in-200", type=_flag, default=False, metavar="BOOL",
                   help="answer HTTP 200 with an error object to every chat request")
    p.add_argument("--echo-auth-status", type=int, default=0,
                   help="answer this status to every chat request, quoting its Authorization")
    p.add_argument(
        "--status-for-model",
        type=_parse_model_status,
        action="append",
        default=None,
        metavar="MODEL=STATUS",
        help="repeatable; default maps bad-request=400",
    )
    return p


async def _serve(args: argparse.Namespace) -> None:
    options = vars(args).copy()
    pairs = options.pop("status_for_model")
    options["status_for_model"] = dict(pairs) if pairs is not None else None
    server = MockServer(**options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # e.g. Windows
            loop.add_signal_handler(sig, stop.set)
    base_url = await server.start()
    # The parent process waits for exactly this line; nothing else goes to stdout.
    sys.stdout.write(f"READY {base_url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python tests/mock_server.py``."""
    args = build_arg_parser().parse_args(argv)
    try:
        _check_loopback(args.host)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


def _options_to_argv(options: Mapping[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "status_for_model":
            for name, code in dict(value).items():
                argv += [flag, f"{name}={int(code)}"]
        else:
            argv += [flag, str(value)]
    return argv


def start_subprocess(
    timeout: float = 20.0, **options: Any
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server with ``sys.executable``; return ``(process, base_url)`` once READY.

    ``options`` are ``MockServer`` constructor arguments (except ``responder``). The
    caller owns the process; prefer ``serve_in_subprocess`` which also stops it.
    """
    if "responder" in options:
        raise ValueError("a responder cannot cross a process boundary")
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # Run as a script by its path: it needs only aiohttp, neither synthcodec nor this package.
    cmd = [sys.executable, os.path.abspath(__file__), *_options_to_argv(options)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"mock server did not print READY within {timeout} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"mock server exited early (code {proc.wait()})")
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"unexpected first line from mock server: {line!r}")
        return proc, line[len("READY ") :]
    except BaseException:
        _terminate(proc)
        raise


def _terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def serve_in_subprocess(
    timeout: float = 20.0, **options: Any
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Context manager around ``start_subprocess`` that terminates the server on exit."""
    proc, base_url = start_subprocess(timeout=timeout, **options)
    try:
        yield proc, base_url
    finally:
        _terminate(proc)


if __name__ == "__main__":
    sys.exit(main())
