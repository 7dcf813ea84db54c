"""Models: one Backend protocol, a spec string to name a model, and the backends behind it."""

from __future__ import annotations

from pathlib import Path

from synthcodec.errors import UserError
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
    MODEL_SPEC_HELP,
    check_spec,
    is_gguf_spec,
    is_http_spec,
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
    """Turn a model spec string into a backend (see MODEL_SPEC_HELP)."""
    spec = spec.strip()
    check_spec(spec)
    if is_gguf_spec(spec):
        from synthcodec.llm.hub import hub_file, is_hub_gguf_spec
        from synthcodec.llm.llamacpp import LlamaCppBackend

        path: str | Path | None = None if spec in ("local", "") else spec.removeprefix("gguf:")
        if is_hub_gguf_spec(spec):
            path = hub_file(spec)
        return LlamaCppBackend(path, n_ctx=n_ctx)
    if spec.startswith("openai:") or is_http_spec(spec):
        from synthcodec.llm.openai_http import OpenAIHTTPBackend

        endpoints = parse_endpoints(spec)
        members = [OpenAIHTTPBackend.for_endpoint(e, timeout=timeout) for e in endpoints]
        if len(members) == 1:
            return members[0]
        from synthcodec.llm.pool import PoolBackend

        return PoolBackend(members, pool_identity(endpoints))
    if spec.startswith("hf:"):
        from synthcodec.llm.hf import HFBackend  # optional extra

        return HFBackend(spec.removeprefix("hf:"))
    if spec.startswith("fake"):
        return FakeBackend.from_spec(spec)
    raise UserError(f"unknown model spec {redact_spec(spec)!r}. {MODEL_SPEC_HELP}")
