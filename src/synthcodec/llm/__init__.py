"""Models: one Backend protocol, a spec string to name a model, and the backends behind it."""

from __future__ import annotations

from collections.abc import Callable

from synthcodec.llm.base import (
    Backend,
    Completion,
    LLMError,
    PermanentError,
    Request,
    TransientError,
)
from synthcodec.llm.fake import FakeBackend
from synthcodec.llm.spec import (
    KINDS,
    MODEL_SPEC_HELP,
    check_spec,
    kind_of,
    parse_endpoints,
    pool_identity,
    redact_spec,
)

__all__ = [
    "Backend",
    "Completion",
    "FakeBackend",
    "LLMError",
    "PermanentError",
    "Request",
    "TransientError",
    "check_spec",
    "load_backend",
    "redact_spec",
    "MODEL_SPEC_HELP",
]


def load_backend(spec: str, *, timeout: float = 300.0, n_ctx: int | None = None) -> Backend:
    """Turn a model spec string into a backend (see MODEL_SPEC_HELP), checked first."""
    spec = spec.strip()
    kind = kind_of(spec)
    kind.check(spec)
    backend: Backend = LOADERS[kind.name](spec, timeout=timeout, n_ctx=n_ctx)
    return backend


# One loader per kind of llm/spec.py's KINDS (a backend module imports llm/spec, so the
# loaders live here, one level up). Each imports its optional packages inside itself.

def _llamacpp(path: str | None, n_ctx: int | None) -> Backend:
    from synthcodec.llm.llamacpp import LlamaCppBackend

    return LlamaCppBackend(path, n_ctx=n_ctx)


def _hub(spec: str, *, timeout: float, n_ctx: int | None) -> Backend:
    from synthcodec.llm.hub import hub_file

    return _llamacpp(str(hub_file(spec)), n_ctx)


def _served(spec: str, *, timeout: float, n_ctx: int | None) -> Backend:
    from synthcodec.llm.openai_http import OpenAIHTTPBackend

    endpoints = parse_endpoints(spec)
    members = [OpenAIHTTPBackend.for_endpoint(e, timeout=timeout) for e in endpoints]
    if len(members) == 1:
        return members[0]
    from synthcodec.llm.pool import PoolBackend

    return PoolBackend(members, pool_identity(endpoints))


def _hf(spec: str, *, timeout: float, n_ctx: int | None) -> Backend:
    from synthcodec.llm.hf import HFBackend  # optional extra

    return HFBackend(kind_of(spec).path(spec))  # type: ignore[misc]


LOADERS: dict[str, Callable[..., Backend]] = {
    "hub": _hub,
    "local": lambda spec, *, timeout, n_ctx: _llamacpp(None, n_ctx),
    "gguf": lambda spec, *, timeout, n_ctx: _llamacpp(kind_of(spec).path(spec), n_ctx),
    "gguf-file": lambda spec, *, timeout, n_ctx: _llamacpp(spec, n_ctx),
    "openai": _served,
    "pool": _served,
    "http": _served,
    "hf": _hf,
    "fake": lambda spec, *, timeout, n_ctx: FakeBackend.from_spec(spec),
}
assert set(LOADERS) == {kind.name for kind in KINDS}, "every kind of model spec has a loader"
