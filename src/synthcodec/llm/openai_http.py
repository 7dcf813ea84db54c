"""Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, OpenAI).

A raw aiohttp call, not the official SDK: the SDK costs several times more CPU per request,
which shows at hundreds of requests in flight. This backend makes exactly one attempt per
call and classifies failures; the engine owns the one retry loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import Any

import aiohttp

from synthcodec.llm.base import (
    Completion,
    ContinuationRequest,
    EmbeddingRequest,
    PermanentError,
    Request,
    TransientError,
    chat_token_logprobs,
)
from synthcodec.llm.ratelimit import limit_kind, parse_ratelimit_headers, retry_after
from synthcodec.llm.reasoning import fold
from synthcodec.llm.spec import HTTPEndpoint, parse_http

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429}
SCHEMA_IN_PROMPT = "prompt"
_NEXT_STYLE = {"json_schema": "json_object", "json_object": SCHEMA_IN_PROMPT}
_NAMES_RESPONSE_FORMAT = re.compile(rb"response_format|json_schema|json_object", re.IGNORECASE)
# An Authorization header a server echoes back (in an error body): never shown.
_AUTH_HEADER = re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]+", re.IGNORECASE)


class OpenAIHTTPBackend:
    supports_json_schema = True
    batch_api = True  # speaks /v1/files + /v1/batches (llm/batch.py), if the server does
    # Servers differ in how (or whether) they honour response_format.
    grammar_json = False
    max_concurrency: int | None = None
    # Whether the server can do these is only known once it answers (vLLM's prompt_logprobs; an
    # /v1/embeddings endpoint): one that cannot fails the request with a clear reason.
    scores_continuations = True
    embeds = True
    token_logprobs = True  # `logprobs`/`top_logprobs` (a server that ignores them: none back)

    def __init__(self, model: str, base_url: str, *, timeout: float = 300.0) -> None:
        """`model` served at `base_url`; the key comes from $SYNTHCODEC_API_KEY (see spec.py)."""
        self._setup(parse_http(f"{model}@{base_url}"), timeout)

    @classmethod
    def for_endpoint(cls, endpoint: HTTPEndpoint, *, timeout: float = 300.0) -> "OpenAIHTTPBackend":
        self = cls.__new__(cls)
        self._setup(endpoint, timeout)
        return self

    def _setup(self, endpoint: HTTPEndpoint, timeout: float) -> None:
        self.model = endpoint.model
        self.base_url = endpoint.url
        # The identity feeds the cache key, configs and messages: never a secret.
        self.identity = endpoint.identity
        self.timeout = timeout
        self._url = self.url("chat/completions")
        self.__secrets: list[str] = []
        self._headers = {"Content-Type": "application/json"}
        key = endpoint.api_key()
        if endpoint.basic_auth:  # credentials written in the URL win: HTTP Basic auth
            user, password = endpoint.basic_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
            self.__secrets += [token, *(s for s in endpoint.basic_auth if s)]
        elif key:
            self._headers["Authorization"] = f"Bearer {key}"
            self.__secrets.append(key)
        self.__secrets += endpoint.query_secrets()
        # Longest first, so that a secret containing another is replaced whole.
        self.__secrets.sort(key=len, reverse=True)
        if "Authorization" in self._headers and endpoint.plain_http_to_remote():
            log.warning(f"warning: {self.identity}: the credentials go over plain HTTP to a "
                        "host that is not this machine; use https:// if the network is not "
                        "yours")
        self._session: aiohttp.ClientSession | None = None
        # OpenAI, vLLM and Ollama take response_format type "json_schema"; llama.cpp's
        # Python server only takes type "json_object" with a "schema" beside it; some servers
        # take no response_format at all. We start with the first and move one step along
        # _NEXT_STYLE each time the server rejects the one sent (SCHEMA_IN_PROMPT: the schema
        # goes in the prompt; the callers validate every reply anyway).
        self._schema_style = "json_schema"

    def __repr__(self) -> str:
        return f"OpenAIHTTPBackend({self.identity!r})"

    def url(self, path: str) -> str:
        """BASE/path, with the base URL's query (if any) kept at the end."""
        base, sep, query = self.base_url.partition("?")
        return f"{base}/{path}" + (f"?{query}" if sep else "")

    def _redact(self, text: str) -> str:
        for secret in self.__secrets:
            text = text.replace(secret, "***")
        return _AUTH_HEADER.sub(r"\1 ***", text)

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self._headers,
            )
        return self._session

    def body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.temperature > 0 or request.sample:
            body["seed"] = request.seed()
        if request.json_schema is not None:
            if self._schema_style == SCHEMA_IN_PROMPT:
                body["messages"] = schema_in_prompt(body["messages"], request.json_schema)
            elif self._schema_style == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": request.json_schema},
                }
            else:
                body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        body.update(_logprob_fields(request))
        return body

    async def _request(self, method: str, url: str, where: str = "",
                       **kwargs: Any) -> tuple[int, bytes, Any]:
        """One HTTP call with this backend's session: (status, body, headers). A timeout or
        a connection failure is a TransientError (`connect`: no connection at all), with
        secrets redacted."""
        session = self._session_for_loop()
        try:
            async with session.request(method, url, **kwargs) as resp:
                return resp.status, await resp.read(), resp.headers
        except asyncio.TimeoutError as exc:
            raise TransientError(f"{self.identity}: {where}no answer within "
                                 f"{self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise TransientError(self._redact(f"{self.identity}: {where}{type(exc).__name__}: "
                                              f"{exc}"),
                                 connect=isinstance(exc, aiohttp.ClientConnectorError)) from exc

    async def complete(self, request: Request) -> Completion:
        while True:
            style = self._schema_style  # what body() writes
            status, raw, headers = await self._request(
                "POST", self._url, data=json.dumps(self.body(request)).encode())
            if (request.json_schema is None or style == SCHEMA_IN_PROMPT
                    or status not in (400, 422, 500) or not _NAMES_RESPONSE_FORMAT.search(raw)):
                break
            if self._schema_style == style:  # the first of the requests it rejected: one step
                self._schema_style = _NEXT_STYLE[style]
                if self._schema_style == SCHEMA_IN_PROMPT:
                    detail = self._redact(raw[:160].decode("utf-8", "replace"))
                    log.warning(f"warning: {self.identity} rejects response_format (HTTP "
                                f"{status}: {detail}); sending the JSON schema in the prompt "
                                "instead and checking every reply here")
        self.check_status(status, raw, headers)
        return self.read_reply(raw, headers)

    def check_status(self, status: int, raw: bytes, headers: Any = None,
                     where: str = "") -> None:
        """Raise for a reply that is not 200: TransientError (408/409/429/5xx) or
        PermanentError (other 4xx). `where` names what failed, e.g. a batch."""
        if status == 200:
            return
        detail = self._redact(raw[:300].decode("utf-8", "replace"))
        message = f"{self.identity}: {where}HTTP {status}: {detail}"
        if status in RETRYABLE_STATUS or status >= 500:
            limits = parse_ratelimit_headers(headers) if headers is not None else None
            kind = limit_kind(raw, limits) if status == 429 else "requests"
            raise TransientError(message, status=status,
                                 retry_after=retry_after(headers) if headers is not None else None,
                                 limit_kind=kind, ratelimit=limits)
        raise PermanentError(message, status=status)

    def read_reply(self, raw: bytes, headers: Any = None) -> Completion:
        """A chat.completion body (a 200 reply, or one answer of a batch) as a Completion."""
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            message = choice["message"]
            # A reasoning parser's trace (vLLM/SGLang: reasoning_content; Ollama, OpenRouter:
            # reasoning) is folded into the text, so the cache keeps the whole reply and
            # llm/reasoning.py alone takes it apart again.
            text = fold(message.get("reasoning_content") or message.get("reasoning"),
                        message.get("content") or "")
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self._unreadable(raw, exc) from exc
        completion = Completion(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            token_logprobs=chat_token_logprobs(choice.get("logprobs")),
        )
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        if isinstance(details, dict) and details.get("cached_tokens"):
            completion.extra["cached_tokens"] = int(details["cached_tokens"])  # priced lower
        limits = parse_ratelimit_headers(headers) if headers is not None else None
        if limits is not None:  # lets the pacer slow down before the server answers 429
            completion.extra["ratelimit"] = limits
        return completion

    def _unreadable(self, raw: bytes, exc: Exception) -> Exception:
        """The error for a 200 reply that is no chat.completion: the server's own message
        when it sent `{"error": {...}}` (PermanentError when it names a 4xx that is not worth
        retrying), else a malformed body (TransientError)."""
        try:
            error = json.loads(raw).get("error")
        except (ValueError, AttributeError):
            error = None
        if not error:
            return TransientError(f"{self.identity}: malformed response body ({exc!r})")
        message = error.get("message") if isinstance(error, dict) else None
        detail = self._redact(str(message or error)[:300])
        code = error.get("code", error.get("status")) if isinstance(error, dict) else None
        text = f"{self.identity}: the server answered an error (HTTP 200): {detail}"
        if isinstance(code, int) and 400 <= code < 500 and code not in RETRYABLE_STATUS:
            return PermanentError(text, status=code)
        return TransientError(text, status=code if isinstance(code, int) else None)

    async def api(self, method: str, path: str, *, json_body: Any = None,
                  upload: bytes | None = None, where: str = "") -> bytes:
        """One call to another endpoint of the same API (`files`, `batches/ID`), with this
        backend's session, key and redaction; raises like `complete`. `upload`: a JSONL
        file sent as multipart form data with purpose=batch (POST /files)."""
        kwargs: dict[str, Any] = {}
        if upload is not None:
            form = aiohttp.MultipartWriter("form-data")
            form.append("batch").set_content_disposition("form-data", name="purpose")
            form.append(upload, {"Content-Type": "application/jsonl"}).set_content_disposition(
                "form-data", name="file", filename="batch.jsonl")
            kwargs = {"data": form, "headers": {"Content-Type": form.content_type}}
        elif json_body is not None:
            kwargs = {"data": json.dumps(json_body).encode()}
        status, raw, headers = await self._request(method, self.url(path), where, **kwargs)
        self.check_status(status, raw, headers, where)
        return raw

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    # --- measuring given text: IFD (prompt log-probabilities) and embeddings ---

    def continuation_body(self, request: ContinuationRequest) -> dict[str, Any]:
        """vLLM's dialect: the reply as a final assistant message that the template leaves
        open (`continue_final_message`), and the log-probability of every prompt token."""
        return {"model": self.model,
                "messages": [*request.messages,
                             {"role": "assistant", "content": request.continuation}],
                "add_generation_prompt": False, "continue_final_message": True,
                "prompt_logprobs": 0, "max_tokens": 1, "temperature": 0.0}

    async def continuation_logprobs(self, request: ContinuationRequest) -> Completion:
        status, raw, headers = await self._request(
            "POST", self._url, data=json.dumps(self.continuation_body(request)).encode())
        self.check_status(status, raw, headers)
        try:
            data = json.loads(raw)
            prompt = data.get("prompt_logprobs")
        except (ValueError, AttributeError) as exc:
            raise TransientError(f"{self.identity}: malformed response body ({exc!r})") from exc
        if not isinstance(prompt, list):
            raise PermanentError(
                f"{self.identity}: the server returned no prompt_logprobs: log-probabilities "
                "of a given reply need vLLM (or use the embedded model, gguf: or hf:)")
        values = reply_logprobs(prompt, request.continuation)
        if values is None:
            raise PermanentError(f"{self.identity}: the reply's tokens could not be found at "
                                 "the end of the prompt the server scored")
        return Completion(text="", prompt_tokens=len(prompt),
                          extra={"token_logprobs": values})

    async def embed(self, request: EmbeddingRequest) -> Completion:
        status, raw, headers = await self._request(
            "POST", self.url("embeddings"),
            data=json.dumps({"model": self.model, "input": request.text}).encode())
        self.check_status(status, raw, headers)
        try:
            data = json.loads(raw)
            vector = [float(x) for x in data["data"][0]["embedding"]]
            used = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TransientError(f"{self.identity}: malformed embeddings body ({exc!r})") from exc
        return Completion(text="", prompt_tokens=used, extra={"embedding": vector})


def schema_in_prompt(messages: list[dict[str, str]],
                     schema: dict[str, Any]) -> list[dict[str, str]]:
    """`messages` with the JSON schema asked for in the last user message (for a server
    that takes no response_format)."""
    out = [dict(m) for m in messages]
    last = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=len(out) - 1)
    out[last]["content"] = (f"{out[last].get('content', '')}\n\nReply with only a JSON value "
                            "that matches this JSON Schema, and no other text:\n"
                            + json.dumps(schema))
    return out


def reply_logprobs(prompt_logprobs: list[Any], reply: str) -> list[float] | None:
    """The log-probabilities of the last prompt tokens that spell `reply` (vLLM's
    `prompt_logprobs`: per token None or {token_id: {"logprob", "decoded_token"}}), found by
    their decoded text from the end; None when they do not spell it."""
    want = reply.strip()
    text, values = "", []
    for entry in reversed(prompt_logprobs):
        if not isinstance(entry, dict) or not entry:
            return None
        info = next(iter(entry.values()))
        text = str(info.get("decoded_token") or "") + text
        values.append(float(info["logprob"]))
        if len(text.strip()) >= len(want):
            return values[::-1] if text.strip() == want else None
    return None

def _logprob_fields(request: Request) -> dict[str, Any]:
    """OpenAI's `logprobs` + `top_logprobs` (at most 20 there) when the request asks."""
    if request.top_logprobs is None:
        return {}
    return {"logprobs": True, "top_logprobs": request.top_logprobs}
