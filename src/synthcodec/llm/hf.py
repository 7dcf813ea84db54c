"""`hf:PATH`: a transformers model in-process, e.g. a LoRA adapter from `synthcodec train`.

PATH is an adapter directory written by `synthcodec train` (its base is found from
`synthcodec_train.json`, else from `adapter_config.json`), a plain Hugging Face model
directory, or a `.gguf` file (dequantized by transformers). Needs the `train` extra.
Loading (base resolution, GGUF dequantizing, tokenizer, chat template, adapter merge) is
`synthcodec.llm.hfmodels`, the same code training uses.

All generation runs in one worker thread, so the event loop never blocks. Requests that
arrive while the worker is busy wait together and go in as one left-padded batch (up to
`max_batch`), which is where a GPU, and to a lesser degree a CPU, gets its throughput.
Each row keeps its own temperature, top_p, max_tokens, stop strings and seed, so an answer
does not depend on which requests it happened to share a batch with (up to float rounding
of the padded batch).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.llm.base import (
    Completion,
    ContinuationRequest,
    LLMError,
    PermanentError,
    Request,
)
from synthcodec.llm.hfmodels import (
    ADAPTER_CONFIG,
    is_adapter,
    load_for_inference,
    render,
    require_train_extra,
    token_ids,
)


class HFBackend:
    supports_json_schema = False
    grammar_json = False
    scores_continuations = True  # log-probabilities of a given reply (IFD), batched

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None,
                 max_batch: int = 8) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise UserError(f"hf:{path}: no such file or directory")
        self.is_adapter = is_adapter(self.path)
        if self.path.is_dir() and not self.is_adapter and not (self.path / "config.json").exists():
            raise UserError(f"hf:{path}: not a Hugging Face model directory (no config.json) "
                            f"nor a LoRA adapter (no {ADAPTER_CONFIG})")
        if self.path.is_file() and self.path.suffix.lower() != ".gguf":
            raise UserError(f"hf:{path}: expected a directory or a .gguf file")
        require_train_extra("the hf: backend")
        self.max_batch = max(1, max_batch)
        # Keep enough requests in flight to fill a batch while the previous one decodes.
        self.max_concurrency = 2 * self.max_batch
        self.identity = f"hf:{self.path.resolve()}#{_fingerprint(self.path)}"
        self._device = device
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        self._closed = False
        # Looked up at each batch (a test may wrap _generate to see the batches).
        self._generation = _Batches(self, lambda requests: self._generate(requests))
        self._measuring = _Batches(self, lambda requests: continuation_batch(self, requests))
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos_ids: list[int] = []
        self._context: int | None = None

    # --- loading (in the worker thread) ---

    def _load(self) -> None:
        import torch

        model, tokenizer, device = load_for_inference(self.path, device=self._device)
        eos = model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(tokenizer.eos_token_id)
        self._eos_ids = eos_ids
        self._context = getattr(model.config, "max_position_embeddings", None)
        self._device = device
        self._tokenizer = tokenizer
        self._model = model
        torch.set_grad_enabled(False)  # this thread only generates

    # --- generation (in the worker thread) ---

    def _generate(self, requests: list[Request]) -> list[Completion | LLMError]:
        if self._model is None:
            self._load()
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        tok = self._tokenizer
        results: list[Completion | LLMError | None] = [None] * len(requests)
        prompts: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            try:
                ids = token_ids(tok, render(tok, request.messages, add_generation_prompt=True))
            except Exception as exc:  # noqa: BLE001 - a template that rejects these messages
                results[i] = PermanentError(f"{self.identity}: cannot apply the chat template: "
                                            f"{exc}")
                continue
            if self._context and len(ids) >= self._context:
                results[i] = PermanentError(f"{self.identity}: the prompt has {len(ids)} tokens; "
                                            f"the model's context is {self._context}")
                continue
            prompts[i] = ids
        if prompts:
            rows = list(prompts)
            width = max(len(prompts[i]) for i in rows)
            budget = max(requests[i].max_tokens for i in rows)
            if self._context:
                budget = max(1, min(budget, self._context - width))
            pad = tok.pad_token_id
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):  # left padding: every prompt ends where decoding starts
                ids = prompts[i]
                input_ids[r, width - len(ids):] = torch.tensor(ids)
                attention[r, width - len(ids):] = 1
            config = GenerationConfig(max_new_tokens=budget, do_sample=False, num_beams=1,
                                      eos_token_id=self._eos_ids, pad_token_id=pad)
            processors = LogitsProcessorList()
            if any(requests[i].temperature > 0 for i in rows):
                processors.append(_RowSampler([requests[i] for i in rows], self._device))
            out = self._model.generate(input_ids=input_ids.to(self._device),
                                       attention_mask=attention.to(self._device),
                                       generation_config=config, logits_processor=processors)
            for r, i in enumerate(rows):
                results[i] = self._completion(requests[i], out[r, width:].tolist(),
                                              len(prompts[i]))
        return results  # type: ignore[return-value]

    def _completion(self, request: Request, generated: list[int], prompt_tokens: int) -> Completion:
        cut = next((k for k, t in enumerate(generated) if t in self._eos_ids), None)
        if cut is not None and cut < request.max_tokens:
            tokens, finish, used = generated[:cut], "stop", cut + 1
        else:
            tokens = generated[: request.max_tokens]
            finish, used = "length", len(tokens)
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        if request.stop:
            hits = [text.find(s) for s in request.stop if s and s in text]
            if hits:
                text, finish = text[: min(hits)], "stop"
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=used)

    # --- the asyncio side ---

    async def complete(self, request: Request) -> Completion:
        return await self._generation.submit(request)

    async def continuation_logprobs(self, request: ContinuationRequest) -> Completion:
        """Log-probabilities of a given reply (IFD): batched like generation, same thread."""
        return await self._measuring.submit(request)

    async def aclose(self) -> None:
        self._closed = True
        self._generation.close()
        self._measuring.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Batches:
    """Requests of one kind (generation, or scoring given replies) queued on the event loop
    and run by `work(requests) -> results` in the backend's one worker thread, up to
    `max_batch` at a time: the requests that arrive while a batch of their kind runs wait
    together and go in as the next one."""

    def __init__(self, backend: HFBackend,
                 work: Callable[[list[Any]], list[Completion | LLMError]]) -> None:
        self.backend = backend
        self.work = work
        self.pending: list[tuple[Any, asyncio.Future[Completion]]] = []
        self.busy = False

    async def submit(self, request: Any) -> Completion:
        if self.backend._closed:
            raise PermanentError(f"{self.backend.identity}: the backend is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Completion] = loop.create_future()
        self.pending.append((request, future))
        # Let the other requests scheduled in this loop iteration queue up first.
        loop.call_soon(self._dispatch)
        return await future

    def _dispatch(self) -> None:
        if self.busy or self.backend._closed:
            return
        self.pending = [(r, f) for r, f in self.pending if not f.done()]  # drop cancelled
        if not self.pending:
            return
        size = self.backend.max_batch
        batch, self.pending = self.pending[:size], self.pending[size:]
        self.busy = True
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.backend._executor, self.work, [r for r, _ in batch])
        job.add_done_callback(lambda done: self._finish(batch, done))

    def _finish(self, batch: list[tuple[Any, asyncio.Future[Completion]]],
                done: asyncio.Future[list[Completion | LLMError]]) -> None:
        self.busy = False
        try:
            results: list[Any] = done.result()
        except BaseException as exc:  # noqa: BLE001 - a failed load fails the whole batch
            error = exc if isinstance(exc, (LLMError, UserError)) else PermanentError(
                f"{self.backend.identity}: {type(exc).__name__}: {exc}")
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._dispatch()

    def close(self) -> None:
        for _, future in self.pending:
            if not future.done():
                future.set_exception(PermanentError(f"{self.backend.identity}: the backend was "
                                                    "closed"))
        self.pending = []


def continuation_batch(backend: HFBackend, requests: list[ContinuationRequest]
                       ) -> list[Completion | LLMError]:
    """One right-padded forward pass over prompt + reply of each request; each reply token's
    log-probability under the chat template, as generation builds the prompt."""
    if backend._model is None:
        backend._load()
    import torch

    tok = backend._tokenizer
    results: list[Completion | LLMError | None] = [None] * len(requests)
    rows: dict[int, tuple[list[int], list[int]]] = {}
    for i, request in enumerate(requests):
        try:
            prompt = token_ids(tok, render(tok, request.messages, add_generation_prompt=True))
        except Exception as exc:  # noqa: BLE001 - a template that rejects these messages
            results[i] = PermanentError(f"{backend.identity}: cannot apply the chat template: "
                                        f"{exc}")
            continue
        reply = token_ids(tok, request.continuation)
        if backend._context and len(prompt) + len(reply) > backend._context:
            results[i] = PermanentError(f"{backend.identity}: prompt and reply are "
                                        f"{len(prompt) + len(reply)} tokens; the model's "
                                        f"context is {backend._context}")
            continue
        rows[i] = (prompt, reply)
    if rows:
        order = list(rows)
        width = max(len(p) + len(r) for p, r in rows.values())
        input_ids = torch.full((len(order), width), tok.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(order), width), dtype=torch.long)
        for r, i in enumerate(order):
            ids = rows[i][0] + rows[i][1]
            input_ids[r, :len(ids)] = torch.tensor(ids)
            attention[r, :len(ids)] = 1
        with torch.no_grad():
            logits = backend._model(input_ids=input_ids.to(backend._device),
                                    attention_mask=attention.to(backend._device)).logits
        for r, i in enumerate(order):
            prompt, reply = rows[i]
            # Only the positions that predict a reply token, so the softmax stays small.
            at = slice(len(prompt) - 1, len(prompt) + len(reply) - 1)
            logprobs = torch.log_softmax(logits[r, at].float(), dim=-1)
            wanted = torch.tensor(reply, device=logprobs.device).unsqueeze(-1)
            values = logprobs.gather(-1, wanted).squeeze(-1)
            results[i] = Completion(text="", prompt_tokens=len(prompt) + len(reply),
                                    extra={"token_logprobs": values.tolist()})
    return results  # type: ignore[return-value]


class _RowSampler:
    """A logits processor that samples each row with its own seeded generator.

    It returns scores that are -inf except at the chosen token, so greedy decoding picks
    exactly that token; rows at temperature 0 take the argmax. One shared RNG would make a
    row's sample depend on its batch mates.
    """

    def __init__(self, requests: list[Request], device: str) -> None:
        import torch

        self.temperatures = [r.temperature for r in requests]
        self.top_ps = [r.top_p if r.top_p is not None else 1.0 for r in requests]
        self.generators = []
        for r in requests:
            g = torch.Generator(device=device)
            g.manual_seed(r.seed())
            self.generators.append(g)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        chosen = torch.full_like(scores, float("-inf"))
        for row in range(scores.size(0)):
            temperature = self.temperatures[row]
            logits = scores[row].float()
            if temperature <= 0:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                top_p = self.top_ps[row]
                if top_p < 1.0:
                    sorted_probs, order = torch.sort(probs, descending=True)
                    keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
                    keep[0] = True
                    filtered = torch.zeros_like(probs)
                    filtered[order[keep]] = sorted_probs[keep]
                    probs = filtered / filtered.sum()
                token = int(torch.multinomial(probs, 1, generator=self.generators[row]))
            chosen[row, token] = 0.0
        return chosen


def _fingerprint(path: Path) -> str:
    """Changes when the weights change, so cached answers of an older adapter are not reused."""
    digest = hashlib.sha256()
    if path.is_file():  # a GGUF: its size and first/last MiB are enough to tell files apart
        digest.update(str(path.stat().st_size).encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(1 << 20))
            fh.seek(max(0, path.stat().st_size - (1 << 20)))
            digest.update(fh.read())
        return digest.hexdigest()[:12]
    for f in sorted(path.iterdir()):
        if not f.is_file():
            continue
        if f.suffix in (".json", ".jinja", ".txt", ".model") or (
                f.name.startswith("adapter_model")):
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".gguf", ".pt"):
            stat = f.stat()  # big weights: name, size and modification time
            digest.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


__all__ = ["HFBackend"]
