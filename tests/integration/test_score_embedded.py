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

    from synthcodec.instruction import join_instruction
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
