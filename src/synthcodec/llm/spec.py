"""Model spec strings: parse, check (before any file is touched) and redact for display.

`NAME@URL` may carry credentials (`http://user:secret@host/v1`, `?sig=...`): they are
used for the request and never shown or stored; `redact_spec` is what configs, manifests,
reports, cache keys and messages see. Every query-string value is a secret (`?sig=`,
`?code=`, `?api_token=`, ... each service names its own), except those of SHOWN_QUERY_KEYS
(`api-version`). Which credentials go where:

- `openai:NAME` (api.openai.com) takes `$OPENAI_API_KEY`;
- `NAME@URL` takes the variable named by a `#key=VAR` suffix, else `$SYNTHCODEC_API_KEY`;
  `$OPENAI_API_KEY` only when URL is OpenAI's own host, so that key never goes to a
  server the user merely named;
- `user:password@` written in a URL wins over any key from the environment for that URL
  (it is the more specific), as HTTP Basic auth; with `#key=VAR` too it is refused (two
  credentials for one URL).

Several servers of one model: `NAME@URL1,URL2,...` (a comma followed by `http://` or
`https://` starts the next URL, so credentials and query strings inside a URL stay intact).
Each URL is one endpoint with everything above applying to it alone: its own credentials,
its own `#key=VAR` (written right after that URL), its own key routing. The identity of
such a pool (cache key, configs) is `NAME@` + the redacted URLs sorted and joined by `,`:
the same whichever endpoint answered and whatever order the URLs were written in.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from synthcodec.errors import UserError
from synthcodec.llm.hub import hub_file, is_hub_gguf_spec

MODEL_SPEC_HELP = (
    "MODEL is one of: 'local' (embedded SmolLM2-135M-Instruct via llama.cpp, the default); "
    "'gguf:PATH' (any local GGUF file); 'gguf:hf:OWNER/REPO/FILE.gguf' (a GGUF on the Hugging "
    "Face Hub, downloaded once into its cache and sha256-checked, then run like gguf:PATH; "
    "needs synthcodec[hf]); 'NAME@http://HOST:PORT/v1' (any OpenAI-compatible "
    "server: vLLM, Ollama, llama.cpp server; key from $SYNTHCODEC_API_KEY, or from $VAR with "
    "'NAME@URL#key=VAR'; $OPENAI_API_KEY goes only to OpenAI's own host); "
    "'NAME@URL1,URL2,...' (several servers of one model: each request goes to the least "
    "loaded, one that keeps failing is benched for a while; a '#key=VAR' goes right after "
    "the URL it is for; --concurrency is per server); "
    "'openai:NAME' (api.openai.com, key from $OPENAI_API_KEY); 'hf:PATH' (a transformers model "
    "dir or a trained adapter, needs synthcodec[train]); 'fake:echo' (no model: answers with "
    "the prompt, for trying a pipeline). The embedded model runs one request at "
    "a time per process: to use more cores, run with '--executor ray' (one model per CPU "
    "slot), or serve the GGUF with 'python -m llama_cpp.server' and point NAME@URL at it."
)

OPENAI_URL = "https://api.openai.com/v1"
OPENAI_HOST = "api.openai.com"
# Query-string keys whose values are shown; every other value is a secret (see the top).
SHOWN_QUERY_KEYS = frozenset({"api-version", "api_version"})
_KEY_SUFFIX = re.compile(r"#key=(?P<var>[A-Za-z_][A-Za-z0-9_]*)$")
_NEXT_URL = re.compile(r",\s*(?=https?://)", re.IGNORECASE)


@dataclass(frozen=True)
class HTTPEndpoint:
    """An OpenAI-compatible endpoint, split into what is sent and what may be shown."""

    model: str
    url: str  # without credentials: what requests go to
    shown_url: str  # what configs and messages show (secrets replaced by ***)
    key_env: tuple[str, ...]  # where the bearer key comes from, first set wins
    basic_auth: tuple[str, str] | None  # user:password from the URL, if any: wins over key_env

    @property
    def identity(self) -> str:
        return f"{self.model}@{self.shown_url}"

    def api_key(self) -> str | None:
        return next((os.environ[v] for v in self.key_env if os.environ.get(v)), None)

    def query_secrets(self) -> list[str]:
        """The values of the URL's query that are redacted wherever text is shown."""
        return [v for k, v in parse_qsl(urlsplit(self.url).query, keep_blank_values=True)
                if k.lower() not in SHOWN_QUERY_KEYS and len(v) >= 4]

    def plain_http_to_remote(self) -> bool:
        parts = urlsplit(self.url)
        return parts.scheme == "http" and not _is_loopback(parts.hostname or "")


def is_http_spec(spec: str) -> bool:
    return "@" in spec and "://" in spec.split("@", 1)[1]


def split_urls(spec: str) -> tuple[str, list[str]]:
    """`NAME@URL1[#key=A],URL2[#key=B]` -> (NAME, [URL1[#key=A], URL2[#key=B]])."""
    name, urls = spec.split("@", 1)
    return name, [u.strip() for u in _NEXT_URL.split(urls)]


def is_pool_spec(spec: str) -> bool:
    """A spec naming several endpoints of one model."""
    return is_http_spec(spec) and len(split_urls(spec.strip())[1]) > 1


def parse_endpoints(spec: str) -> list[HTTPEndpoint]:
    """Every endpoint of `NAME@URL1,URL2,...` (one for `NAME@URL` and `openai:NAME`)."""
    spec = spec.strip()
    if spec.startswith("openai:"):
        return [parse_http(spec)]
    name, urls = split_urls(spec)
    endpoints = [parse_http(f"{name}@{url}") for url in urls]
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.shown_url in seen:
            raise UserError(f"model spec {redact_spec(spec)!r} names {endpoint.shown_url} twice")
        seen.add(endpoint.shown_url)
    return endpoints


def pool_identity(endpoints: list[HTTPEndpoint]) -> str:
    """What a pool of endpoints of one model is known as (cache key, configs): the model and
    its redacted URLs, sorted, so neither the order written nor the endpoint that answered
    changes it."""
    if len(endpoints) == 1:
        return endpoints[0].identity
    return f"{endpoints[0].model}@" + ",".join(sorted(e.shown_url for e in endpoints))


def parse_http(spec: str) -> HTTPEndpoint:
    """`NAME@URL[#key=VAR]` or `openai:NAME` (one endpoint; see parse_endpoints for more)."""
    spec = spec.strip()
    if is_pool_spec(spec):
        raise UserError(f"model spec {redact_spec(spec)!r} names several endpoints; "
                        "this takes one (NAME@URL)")
    if spec.startswith("openai:"):
        name = spec.removeprefix("openai:").strip()
        if not name:
            raise UserError("model spec 'openai:' needs a model name, e.g. openai:gpt-4o-mini")
        return HTTPEndpoint(name, OPENAI_URL, OPENAI_URL, ("OPENAI_API_KEY",), None)
    name, url = spec.split("@", 1)
    key_env: tuple[str, ...] = ("SYNTHCODEC_API_KEY",)
    match = _KEY_SUFFIX.search(url)
    if match:
        key_env = (match.group("var"),)
        url = url[: match.start()]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"model spec {redact_spec(spec)!r}: the URL must look like "
                        "http://HOST:PORT/v1")
    if not name.strip():
        raise UserError(f"model spec {redact_spec(spec)!r}: name the model before the @")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UserError(f"model spec {redact_spec(spec)!r}: bad port in the URL") from None
    basic = None
    if parts.username is not None or parts.password is not None:
        basic = (parts.username or "", parts.password or "")
        if match:
            raise UserError(f"model spec {redact_spec(spec)!r} gives two credentials for one "
                            f"URL (user:password@ and #key={match.group('var')}): keep one")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    if ":" in parts.hostname:  # IPv6
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, ""))
    shown = urlunsplit((parts.scheme, ("***@" if basic else "") + netloc,
                        parts.path.rstrip("/"), _shown_query(parts.query), ""))
    if parts.hostname == OPENAI_HOST and not match:
        key_env = ("SYNTHCODEC_API_KEY", "OPENAI_API_KEY")
    return HTTPEndpoint(name.strip(), clean, shown, key_env, basic)


def redact_spec(spec: str) -> str:
    """The spec with credentials in its URL replaced by ***; other specs unchanged."""
    if not is_http_spec(spec):
        return spec
    name, urls = split_urls(spec)
    return f"{name}@" + ",".join(_redact_url(url) for url in urls)


def _redact_url(url: str) -> str:
    suffix = ""
    match = _KEY_SUFFIX.search(url)
    if match:
        suffix, url = url[match.start():], url[: match.start()]
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = ("***@" + netloc[1]) if len(netloc) == 2 else netloc[0]
        return urlunsplit((parts.scheme, host, parts.path, _shown_query(parts.query),
                           "")) + suffix
    except ValueError:
        return "<unparseable URL>"


def _shown_query(query: str) -> str:
    """A URL's query with every value as *** but those of SHOWN_QUERY_KEYS."""
    return urlencode([(k, v if k.lower() in SHOWN_QUERY_KEYS else "***")
                      for k, v in parse_qsl(query, keep_blank_values=True)], safe="*")


def is_gguf_spec(spec: str) -> bool:
    """A GGUF run in-process by llama.cpp: `local` (or empty), `gguf:PATH` or a bare `.gguf`."""
    spec = spec.strip()
    return spec in ("local", "") or spec.startswith("gguf:") or spec.endswith(".gguf")


def is_local_spec(spec: str) -> bool:
    """A model with no server behind it (a GGUF, `hf:`, `fake`): nothing is sent anywhere,
    and it costs $0. In load_backend's order: a served `NAME@URL` is never local, whatever
    its NAME (`fake-gpt@http://...`)."""
    spec = spec.strip()
    return is_gguf_spec(spec) or (not is_http_spec(spec) and spec.startswith(("hf:", "fake")))


def runs_in_process(spec: str) -> bool:
    """An embedded model (a GGUF, `hf:`): it computes in this process, on its cores."""
    return is_local_spec(spec) and not spec.strip().startswith("fake")


def check_spec(spec: str) -> None:
    """Raise UserError for a spec that cannot work, without loading anything."""
    spec = spec.strip()
    if is_hub_gguf_spec(spec):
        from synthcodec.llm.llamacpp import check_installed

        check_installed()
        hub_file(spec)  # downloaded (once) and checked before anything else is touched
        return
    if is_gguf_spec(spec):
        from synthcodec.llm.llamacpp import check_installed

        if spec not in ("local", ""):
            path = Path(spec.removeprefix("gguf:"))
            if not path.is_file():
                raise UserError(f"model spec {spec!r}: no such GGUF file {path}")
        check_installed(embedded=spec in ("local", ""))
        return
    if spec.startswith("openai:") or is_http_spec(spec):
        endpoints = parse_endpoints(spec)
        for endpoint in endpoints:
            missing = [v for v in endpoint.key_env if v != "SYNTHCODEC_API_KEY"
                       and v != "OPENAI_API_KEY"]
            if missing and not endpoint.api_key():
                raise UserError(f"model spec {redact_spec(spec)!r} names the key variable "
                                f"${missing[0]}, which is not set")
        if spec.startswith("openai:") and not endpoints[0].api_key():
            raise UserError(f"model spec {spec!r} needs $OPENAI_API_KEY")
        return
    if spec.startswith("hf:"):
        path = Path(spec.removeprefix("hf:"))
        if not path.exists():
            raise UserError(f"model spec {spec!r}: no such model directory {path}")
        return
    if spec.startswith("fake"):
        kind = spec.partition(":")[2] or "echo"
        if kind != "echo":
            raise UserError(f"unknown fake model {spec!r}; the command line offers 'fake:echo'")
        return
    raise UserError(f"unknown model spec {redact_spec(spec)!r}. {MODEL_SPEC_HELP}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
