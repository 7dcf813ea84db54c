"""Models: one Backend protocol, a spec string to name a model, and the backends behind it."""

from __future__ import annotations

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
    check_spec,
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

MODEL_SPEC_HELP = (
    "MODEL is one of: 'local' (embedded SmolLM2-135M-Instruct via llama.cpp, the default); "
    "'gguf:PATH' (any local GGUF file); 'NAME@http://HOST:PORT/v1' (any OpenAI-compatible "
    "server: vLLM, Ollama, llama.cpp server; key from $SYNTHCODEC_API_KEY, or from $VAR with "
    "'NAME@URL#key=VAR'; $OPENAI_API_KEY goes only to OpenAI's own host); "
    "'NAME@URL1,URL2,...' (several servers of one model: each request goes to the least "
    "loaded, one that keeps failing is benched for a while; a '#key=VAR' goes right after "
    "the URL it is for; --concurrency is per server); "
    "'openai:NAME' (api.openai.com, key from $OPENAI_API_KEY); 'hf:PATH' (a transformers model "
    "dir or a trained adapter, needs synthcodec[train]); 'fake:echo' (no model: answers with "
    "the prompt, for trying a pipeline). The embedded model runs one request at "
    "a time per process: to use both cores, split the input and run one process per part, or "
    "serve the GGUF with 'python -m llama_cpp.server' and point NAME@URL at it."
)


def load_backend(spec: str, *, timeout: float = 300.0, n_ctx: int | None = None) -> Backend:
    """Turn a model spec string into a backend (see MODEL_SPEC_HELP)."""
    spec = spec.strip()
    check_spec(spec)
    if spec in ("local", "") or spec.startswith("gguf:") or spec.endswith(".gguf"):
        from synthcodec.llm.llamacpp import LlamaCppBackend

        path = None if spec in ("local", "") else spec.removeprefix("gguf:")
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
