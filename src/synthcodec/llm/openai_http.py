"""Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, OpenAI).

A raw aiohttp call, not the official SDK: the SDK costs several times more CPU per request,
which shows at hundreds of requests in flight. This backend makes exactly one attempt per
call and classifies failures; the engine owns the one retry loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from synthcodec.llm.base import (
    Completion,
    PermanentError,
    Request,
    TransientError,
    chat_token_logprobs,
)
from synthcodec.llm.ratelimit import limit_kind, parse_ratelimit_headers, retry_after
from synthcodec.llm.spec import SECRET_QUERY_KEYS, HTTPEndpoint, parse_http

RETRYABLE_STATUS = {408, 409, 429}


class OpenAIHTTPBackend:
    supports_json_schema = True
    batch_api = True  # speaks /v1/files + /v1/batches (llm/batch.py), if the server does
    # Servers differ in how (or whether) they honour response_format.
    grammar_json = False
    max_concurrency: int | None = None
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
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
            self.__secrets.append(key)
        elif endpoint.basic_auth:  # credentials written in the URL: HTTP Basic auth
            user, password = endpoint.basic_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        if endpoint.basic_auth:
            self.__secrets += [s for s in endpoint.basic_auth if s]
        self.__secrets += [v for k, v in parse_qsl(urlsplit(self.base_url).query)
                           if k.lower() in SECRET_QUERY_KEYS and v]
        if "Authorization" in self._headers and endpoint.plain_http_to_remote():
            print(f"warning: {self.identity}: the API key goes over plain HTTP to a host that "
                  "is not this machine; use https:// if the network is not yours",
                  file=sys.stderr)
        self._session: aiohttp.ClientSession | None = None
        # OpenAI, vLLM and Ollama take response_format type "json_schema"; llama.cpp's
        # Python server only takes type "json_object" with a "schema" beside it. We start
        # with the former and switch once if the server rejects it.
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
        return text

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
            if self._schema_style == "json_schema":
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

    async def _post(self, request: Request) -> tuple[int, bytes, Any]:
        return await self._request("POST", self._url, data=json.dumps(self.body(request)).encode())

    async def complete(self, request: Request) -> Completion:
        status, raw, headers = await self._post(request)
        if (status in (400, 422, 500) and request.json_schema is not None
                and self._schema_style == "json_schema" and b"json_schema" in raw):
            self._schema_style = "json_object"  # the llama.cpp server dialect; see __init__
            status, raw, headers = await self._post(request)
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
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TransientError(f"{self.identity}: malformed response body ({exc!r})") from exc
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


def _logprob_fields(request: Request) -> dict[str, Any]:
    """OpenAI's `logprobs` + `top_logprobs` (at most 20 there) when the request asks."""
    if request.top_logprobs is None:
        return {}
    return {"logprobs": True, "top_logprobs": request.top_logprobs}
