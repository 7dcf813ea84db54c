"""IFD with the embedded model on real Alpaca rows, checked against llama.cpp's own logits.

Two rows only: the machine has 2 shared cores. The reference evaluates the same tokens with
`logits_all=True` (every position's logits kept), which the backend avoids for memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import cli, read_jsonl

pytestmark = pytest.mark.integration


def reference_loss(llama: object, prompt: str, reply: str) -> float:
    """Mean loss of `reply` after the templated `prompt`, from the full logits matrix."""
    p = llama.tokenize(prompt.encode(), add_bos=False, special=True)  # type: ignore[attr-defined]
    r = llama.tokenize(reply.encode(), add_bos=False, special=False)  # type: ignore[attr-defined]
    llama.reset()  # type: ignore[attr-defined]
    llama.eval(p + r)  # type: ignore[attr-defined]
    scores = np.asarray(llama.scores[: len(p) + len(r)], dtype=np.float64)  # type: ignore[attr-defined]
    losses = []
    for k, token in enumerate(r):
        row = scores[len(p) - 1 + k]
        top = row.max()
        losses.append(-(row[token] - (top + np.log(np.exp(row - top).sum()))))
    return float(np.mean(losses))


def test_ifd_on_real_alpaca_rows(shared_data: Path, require_embedded: None, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_data / "alpaca" / "random_9k.json"
    if not data.exists():
        pytest.skip(f"{data} is absent")
    run = tmp_path / "run"
    assert cli("score", str(data), "--limit", "2", "--no-cache", "-q", "-o", str(run)) == 0, \
        capsys.readouterr().err
    rows = read_jsonl(run / "output.jsonl")
    assert len(rows) == 2

    from llama_cpp import Llama

    from synthcodec.formats import join_instruction
    from synthcodec.llm.llamacpp import default_gguf

    llama = Llama(model_path=str(default_gguf()), n_ctx=2048, n_threads=2, logits_all=True,
                  verbose=False)
    system = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
              "Hugging Face<|im_end|>\n")
    source = json.loads(data.read_text())[:2]
    for row, original in zip(rows, source):
        user = join_instruction(original["instruction"], original["input"])
        asked = f"{system}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        alone = f"{system}<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
        conditioned = reference_loss(llama, asked, original["output"])
        direct = reference_loss(llama, alone, original["output"])
        assert row["ifd_conditioned_loss"] == pytest.approx(conditioned, abs=1e-4)
        assert row["ifd_direct_loss"] == pytest.approx(direct, abs=1e-4)
        assert row["ifd"] == pytest.approx(conditioned / direct, abs=1e-4)
        assert row["ifd_ge_1"] is (row["ifd"] >= 1)


def test_hf_backend_scores_replies_batched_as_alone_and_as_llama_cpp(
        require_embedded: None) -> None:
    """hf: (transformers, the same GGUF dequantized) batches waiting scoring requests into one
    right-padded pass; each row's log-probabilities equal its own pass alone, and the reply's
    tokens and mean loss match llama.cpp's (measured: within 3%, Q4_1 dequantized vs computed
    quantized)."""
    pytest.importorskip("transformers")
    import asyncio

    from synthcodec.llm.base import ContinuationRequest
    from synthcodec.llm.hf import HFBackend
    from synthcodec.llm.llamacpp import LlamaCppBackend, default_gguf

    reply = "Red, yellow and blue are the three primary colors."
    requests = [ContinuationRequest(({"role": "user", "content": "Name three primary colors."},),
                                    reply),
                ContinuationRequest(({"role": "user", "content": ""},), reply),
                ContinuationRequest(({"role": "user", "content": "Say hi"},),
                                    "Hello there! How can I help you today?")]

    async def main() -> tuple[list[list[float]], ...]:
        hf = HFBackend(default_gguf(), max_batch=4)
        sizes: list[int] = []
        work = hf._measuring.work
        hf._measuring.work = lambda batch: (sizes.append(len(batch)), work(batch))[1]
        try:
            together = await asyncio.gather(*(hf.continuation_logprobs(r) for r in requests))
            alone = [await hf.continuation_logprobs(r) for r in requests]
        finally:
            await hf.aclose()
        assert sizes == [3, 1, 1, 1]
        llama = LlamaCppBackend()
        try:
            reference = [await llama.continuation_logprobs(r) for r in requests]
        finally:
            await llama.aclose()
        return tuple([c.extra["token_logprobs"] for c in run]
                     for run in (together, alone, reference))

    together, alone, reference = asyncio.run(main())
    for batched, single, ref in zip(together, alone, reference):
        assert batched == pytest.approx(single, abs=1e-4)
        assert len(batched) == len(ref)
        assert np.mean(batched) == pytest.approx(np.mean(ref), rel=0.05)
