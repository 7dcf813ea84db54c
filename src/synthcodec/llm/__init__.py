"""Models: one Backend protocol, a spec string to name a model, and the backends behind it."""

from __future__ import annotations

import os

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

__all__ = [
    "Backend",
    "Completion",
    "FakeBackend",
    "LLMError",
    "PermanentError",
    "Request",
    "TransientError",
    "load_backend",
    "MODEL_SPEC_HELP",
]

MODEL_SPEC_HELP = (
    "MODEL is one of: 'local' (embedded SmolLM2-135M-Instruct via llama.cpp, the default); "
    "'gguf:PATH' (any local GGUF file); 'NAME@http://HOST:PORT/v1' (any OpenAI-compatible "
    "server: vLLM, Ollama, llama.cpp server; key from $SYNTHCODEC_API_KEY or $OPENAI_API_KEY); "
    "'openai:NAME' (api.openai.com, key from $OPENAI_API_KEY); 'hf:PATH' (a transformers model "
    "dir or a trained adapter, needs synthcodec[train]). The embedded model runs one request at "
    "a time per process: to use both cores, split the input and run one process per part, or "
    "serve the GGUF with 'python -m llama_cpp.server' and point NAME@URL at it."
)

OPENAI_URL = "https://api.openai.com/v1"


def load_backend(spec: str, *, timeout: float = 300.0, n_ctx: int | None = None) -> Backend:
    """Turn a model spec string into a backend (see MODEL_SPEC_HELP)."""
    spec = spec.strip()
    if spec in ("local", "") or spec.startswith("gguf:") or spec.endswith(".gguf"):
        from synthcodec.llm.llamacpp import LlamaCppBackend

        path = None if spec in ("local", "") else spec.removeprefix("gguf:")
        return LlamaCppBackend(path, n_ctx=n_ctx)
    if spec.startswith("openai:"):
        from synthcodec.llm.openai_http import OpenAIHTTPBackend

        name = spec.removeprefix("openai:")
        return OpenAIHTTPBackend(name, OPENAI_URL, api_key_env=("OPENAI_API_KEY",), timeout=timeout)
    if "@" in spec and "://" in spec.split("@", 1)[1]:
        from synthcodec.llm.openai_http import OpenAIHTTPBackend

        name, url = spec.split("@", 1)
        return OpenAIHTTPBackend(
            name, url, api_key_env=("SYNTHCODEC_API_KEY", "OPENAI_API_KEY"), timeout=timeout
        )
    if spec.startswith("hf:"):
        from synthcodec.llm.hf import HFBackend  # optional extra

        return HFBackend(spec.removeprefix("hf:"))
    if spec.startswith("fake"):
        return FakeBackend.from_spec(spec)
    if os.path.exists(spec) and spec.endswith(".gguf"):
        from synthcodec.llm.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec, n_ctx=n_ctx)
    raise UserError(f"unknown model spec {spec!r}. {MODEL_SPEC_HELP}")
