"""Models: one Backend protocol, a spec string to name a model, and the backends behind it."""

from __future__ import annotations

from synthcodec.llm.base import (
    Backend,
    Completion,
    LLMError,
    PermanentError,
    Request,
    TransientError,
)
from synthcodec.llm.fake import FakeBackend
from synthcodec.llm.spec import MODEL_SPEC_HELP, check_spec, kind_of, redact_spec

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
    backend: Backend = kind.load(spec, timeout=timeout, n_ctx=n_ctx)
    return backend
