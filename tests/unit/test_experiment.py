"""The experiment recipe end to end on fake models and a stub trainer: steps, markers,
skip on re-run, redo on a changed setting, resume after an interruption, the report."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from synthcodec.errors import UserError
from synthcodec.experiment import Experiment, run_experiment
from synthcodec.llm.base import Request
from synthcodec.llm.fake import FakeBackend
from synthcodec.train.sft import TrainResult
from tests.helpers import recipe_head, write_jsonl

GOOD = [{"instruction": f"Good task {i}", "input": "", "output": f"A fine answer {i}."}
        for i in range(4)]
BAD = [{"instruction": f"Bad task {i}", "input": "", "output": f"nonsense {i}"}
       for i in range(4)]
QUESTIONS = [{"question_id": i, "text": f"Question {i}?", "category": "generic"}
             for i in range(1, 4)]


def rater(request: Request) -> str:
    text = request.messages[-1]["content"]
    return "5\nclear and correct" if "A fine answer" in text else "1\nwrong"


def judge(request: Request) -> str:
    """Scores the 'good' answer 9 and the other 4, whichever order they come in."""
    text = request.messages[-1]["content"]
    good, meh = text.find("GOOD ANSWER"), text.find("MEH ANSWER")
    assert good >= 0 and meh >= 0, text
    return "9 4\nfirst is better" if good < meh else "4 9\nsecond is better"


class StubTrainer:
    """Writes an adapter-shaped directory; counts calls; can fail once to simulate Ctrl-C."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.interrupt_on: str | None = None

    def __call__(self, data: Any, base: str, output: Any, **kw: Any) -> TrainResult:
        name = Path(output).name
        if self.interrupt_on == name:
            self.interrupt_on = None
            raise KeyboardInterrupt
        self.calls.append(name)
        rows = json.loads(Path(data).read_text(encoding="utf-8"))
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text("{}")
        (out / "adapter_model.safetensors").write_text(json.dumps([rows, kw["max_steps"]]))
        info = {"base": {"spec": base, "path": "/models/base.gguf"},
                "result": {"losses": [2.0, 1.5]}, "versions": {"torch": "0"}}
        (out / "synthcodec_train.json").write_text(json.dumps(info))
        config = {"steps": kw["max_steps"], "batch_size": kw["batch_size"], "seed": kw["seed"],
                  "learning_rate": kw["learning_rate"] or 2e-4, "lora_r": kw["lora_r"],
                  "max_length": kw["max_length"]}
        return TrainResult(output_dir=out, losses=[2.0, 1.5], final_loss=1.5,
                           n_rows=len(rows), steps=kw["max_steps"], seconds=0.1,
                           train_tokens=42, config=config)


def recipe(tmp_path: Path, max_steps: int = 2) -> str:
    head, bench = recipe_head(tmp_path, [r for pair in zip(GOOD, BAD) for r in pair],
                              QUESTIONS, experiment='name = "unit"\nseed = 3\n',
                              rate="max-tokens = 32\n")
    return head + f"""
[experiment.datasets.filtered]
top = 4

[experiment.datasets.random]
random = "filtered"

[experiment.train]
max_steps = {max_steps}
batch_size = 2
max_length = 128

[experiment.bench]
path = "{bench}"
limit = 3
max_tokens = 16

[experiment.compare]
judge_max_tokens = 32
"""


def backends() -> dict[str, Any]:
    return {"rate": FakeBackend(rater, name="rater"),
            "compare": FakeBackend(judge, name="judge"),
            "answer:filtered": FakeBackend(lambda r: "GOOD ANSWER", name="filtered"),
            "answer:random": FakeBackend(lambda r: "MEH ANSWER", name="random")}


def run(text: str, trainer: StubTrainer, **kw: Any) -> tuple[Path, list[str]]:
    said: list[str] = []
    exp = Experiment.from_table(tomllib.loads(text)["experiment"], recipe_text=text)
    run = run_experiment(exp, backends=kw.pop("backends", None) or backends(),
                         trainer=trainer, progress=False, say=said.append, **kw)
    return run.passes["report"], said


def skipped(said: list[str]) -> set[str]:
    return {m.group(1) for line in said if (m := re.match(r"\[(.+)\] done earlier", line))}


def test_experiment_runs_every_step_and_reports(tmp_path: Path) -> None:
    trainer = StubTrainer()
    report, said = run(recipe(tmp_path), trainer)
    exp = tmp_path / "exp"
    assert trainer.calls == ["filtered", "random"]
    # The four rows rated 5, whole, in Alpaca shape (no score columns).
    assert json.loads((exp / "data" / "filtered.json").read_text()) == GOOD
    # As many rows drawn from the whole pool with the recipe's seed: the same every run.
    assert json.loads((exp / "data" / "random.json").read_text()) == [
        GOOD[1], BAD[2], GOOD[3], BAD[3]]
    # What each adapter was trained on, and how long (the stub trainer keeps both).
    for name, rows in (("filtered", GOOD), ("random", [GOOD[1], BAD[2], GOOD[3], BAD[3]])):
        weights = exp / "adapters" / name / "adapter_model.safetensors"
        assert json.loads(weights.read_text()) == [rows, 2]
    for step in ("rate", "data-filtered", "data-random", "train-filtered", "answer-filtered",
                 "train-random", "answer-random", "compare-filtered-vs-random"):
        entry = ledger(exp)[step]
        assert len(entry["config_sha"]) == 64 and entry["finished"]
    assert ledger(exp)["rate"]["info"] == {"failed": 0, "rated": 8, "requests": 8}
    for name, answer in (("filtered", "GOOD ANSWER"), ("random", "MEH ANSWER")):
        answers = [json.loads(line)
                   for line in (exp / "answers" / f"{name}.jsonl").read_text().splitlines()]
        assert [(a["question_id"], a["question"], a["answer"]) for a in answers] == [
            (q["question_id"], q["text"], answer) for q in QUESTIONS]
    compare = json.loads((exp / "compare" / "filtered-vs-random" / "report.json").read_text())
    assert compare["total"]["alpagasus"] == {"win": 3, "tie": 0, "lose": 0, "score": 2.0}
    assert (exp / "compare" / "filtered-vs-random" / "chart.png").exists()
    assert (exp / "training_loss.png").exists()

    text = report.read_text()
    assert "| filtered | random | 3 | 0 | 3/0/0 | 2.000 | 3/0/0 | 100.0% |" in text
    # The ratings of each dataset's rows (5 for a good row, 1 for a bad one) and of the pool.
    assert "| filtered | top 4 by score | 4 | 8 | 5.00 (5–5) | data/filtered.json |" in text
    drawn = [5 if "fine" in r["output"] else 1
             for r in json.loads((exp / "data" / "random.json").read_text())]
    assert (f"| random | random as many as 'filtered' (seed 3) | 4 | 8 | "
            f"{sum(drawn) / 4:.2f} ({min(drawn)}–{max(drawn)}) |") in text
    assert "Mean score of the whole rated pool: 3.00." in text
    assert "Smoke scale" in text  # base = local
    assert "compare/filtered-vs-random/chart.png" in text
    for needed in ("`fake:echo`", "top 4 by score", "random as many as 'filtered' (seed 3)",
                   "max tokens 16", "Seeds", "Versions", "torch 0", "recipe.toml"):
        assert needed in text, needed
    assert (exp / "recipe.toml").read_text().startswith("\n[experiment]")
    data = json.loads((exp / "report.json").read_text())
    assert data["smoke_scale"] is True
    pool = {"pool": 8, "pool_score_mean": 3.0, "rows": 4}
    assert data["datasets"]["filtered"] == {
        **pool, "rule": "top 4 by score", "signal": "score", "signal_mean": 5.0,
        "score_mean": 5.0, "score_min": 5.0, "score_max": 5.0}
    assert {k: v for k, v in data["datasets"]["random"].items() if k != "signal_mean"} == {
        **pool, "rule": "random as many as 'filtered' (seed 3)", "signal": "random",
        "score_mean": 3.0, "score_min": 1.0, "score_max": 5.0}


def ledger(exp: Path) -> dict[str, Any]:
    """The experiment's stages.json: each step's settings hash and whether it finished."""
    return json.loads((exp / "stages.json").read_text())


def test_rerun_skips_finished_steps_and_redoes_changed_ones(tmp_path: Path) -> None:
    trainer = StubTrainer()
    run(recipe(tmp_path), trainer)
    before = ledger(tmp_path / "exp")["train-filtered"]

    _, said = run(recipe(tmp_path), trainer)
    assert trainer.calls == ["filtered", "random"]  # nothing retrained
    assert skipped(said) == {"rate", "data-filtered", "data-random", "train-filtered",
                             "answer-filtered", "train-random", "answer-random",
                             "compare-filtered-vs-random"}
    assert ledger(tmp_path / "exp")["train-filtered"] == before  # not touched
    report = (tmp_path / "exp" / "report.md").read_text()
    assert "| train-filtered | skipped (done earlier) |" in report

    _, said = run(recipe(tmp_path, max_steps=3), trainer)  # a training setting changed
    assert trainer.calls == ["filtered", "random", "filtered", "random"]
    # The answers were redone (new adapters) but came out the same, so the judging, which
    # hangs on the answers' content, is still valid and skipped.
    assert skipped(said) == {"rate", "data-filtered", "data-random", "compare-filtered-vs-random"}


def test_rerun_calls_no_model_and_a_changed_dataset_redoes_what_reads_it(tmp_path: Path
                                                                        ) -> None:
    """Every step is a driver plan over the experiment's ledger: a re-run of a finished
    experiment runs none of them (no model asked, no adapter trained, no entry touched); a
    changed selection redoes that dataset and what hangs on its rows, and nothing else."""
    trainer = StubTrainer()
    run(recipe(tmp_path), trainer)
    steps = set(Experiment.from_table(tomllib.loads(recipe(tmp_path))["experiment"]).plan())
    entries = {name: ledger(tmp_path / "exp")[name] for name in steps - {"report"}}

    models = backends()
    summary = run_experiment(
        Experiment.from_table(tomllib.loads(recipe(tmp_path))["experiment"]), backends=models,
        trainer=trainer, progress=False)
    assert [s.stage for s in summary.stages if not s.skipped] == ["report"]
    assert {s.stage for s in summary.stages if s.skipped} == steps - {"report"}
    assert all(not m.calls for m in models.values()) and trainer.calls == ["filtered", "random"]
    assert {name: ledger(tmp_path / "exp")[name] for name in entries} == entries

    fewer = recipe(tmp_path).replace("top = 4", "top = 3")  # the filtered dataset's rule
    _, said = run(fewer, trainer)
    # random draws as many rows as filtered: both datasets, adapters and answer sets redone;
    # the fake models answer the same, so the judging (over the answers' content) stands.
    assert skipped(said) == {"rate", "compare-filtered-vs-random"}
    assert trainer.calls == ["filtered", "random", "filtered", "random"]
    assert any(line.startswith("data-filtered: settings changed (") for line in said)
    assert len(json.loads((tmp_path / "exp" / "data" / "random.json").read_text())) == 3


def test_interrupted_experiment_resumes_where_it_stopped(tmp_path: Path) -> None:
    trainer = StubTrainer()
    trainer.interrupt_on = "random"
    with pytest.raises(KeyboardInterrupt):
        run(recipe(tmp_path), trainer)
    assert trainer.calls == ["filtered"]
    assert ledger(tmp_path / "exp")["train-random"].get("finished") is None  # began, unfinished
    assert ledger(tmp_path / "exp")["train-filtered"]["finished"]
    assert not (tmp_path / "exp" / "report.md").exists()

    _, said = run(recipe(tmp_path), trainer)
    assert trainer.calls == ["filtered", "random"]  # only the unfinished adapter trained
    assert skipped(said) == {"rate", "data-filtered", "data-random", "train-filtered",
                             "answer-filtered"}
    assert (tmp_path / "exp" / "report.md").exists()


def test_marker_without_output_redoes_the_step(tmp_path: Path) -> None:
    trainer = StubTrainer()
    run(recipe(tmp_path), trainer)
    (tmp_path / "exp" / "answers" / "random.jsonl").unlink()
    _, said = run(recipe(tmp_path), trainer)
    assert "answer-random" not in skipped(said)
    assert trainer.calls == ["filtered", "random"]


@pytest.mark.parametrize("patch, message", [
    ({"datasets": {"a": {"top": 2}}}, "at least two"),
    ({"datasets": {"a": {"top": 2, "random": 2}, "b": {"top": 1}}}, "only one of"),
    ({"datasets": {"a": {"random": "b"}, "b": {"top": 1}}}, "defined before it"),
    ({"datasets": {"a": {"top": 1}, "b": {"top": 2}}, "bogus": 1}, "unknown key 'bogus'"),
    ({"datasets": {"a": {"top": "x"}, "b": {"top": 2}}}, "top must be a int"),
    ({"datasets": {"a": {"top": 1}, "b": {"top": 2}},
      "compare": {"pairs": [["a", "c"]]}}, "pairs must be"),
])
def test_bad_recipes_are_refused_before_anything_runs(patch: dict[str, Any], message: str) -> None:
    table: dict[str, Any] = {"dir": "x", "rate": {"data": "pool.json"},
                             "bench": {"path": "b.jsonl"}, **patch}
    with pytest.raises(UserError, match=message):
        Experiment.from_table(table)


def test_run_command_dry_run_lists_the_steps(tmp_path: Path) -> None:
    from synthcodec.commands.run import command

    path = tmp_path / "experiment.toml"
    path.write_text(recipe(tmp_path))
    result = CliRunner().invoke(command, [str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    steps = ("rate → data-filtered → data-random → train-filtered → answer-filtered → "
             "train-random → answer-random → compare-filtered-vs-random → report")
    assert steps in result.output
    assert not (tmp_path / "exp").exists()


def test_example_recipe_parses() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "examples" / "experiment.toml").read_text()
    exp = Experiment.from_table(tomllib.loads(text)["experiment"])
    assert [d.name for d in exp.datasets] == ["filtered", "random"]
    assert exp.compare.pairs == [("filtered", "random")]


class StubBenchmarker:
    """Writes a benchmark run as `lmeval.run_benchmark` does; each adapter scores higher."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, model: str, settings: Any, run_dir: Any, **kw: Any) -> Any:
        from synthcodec.lmeval import ModelTarget, write_outputs

        self.calls.append(model)
        acc = {"local": 0.5}.get(model, 0.75 if "filtered" in model else 0.25)
        results = {"results": {t: {"alias": t, "acc,none": acc, "acc_stderr,none": 0.1}
                               for t in settings.tasks},
                   "versions": {t: 1.0 for t in settings.tasks},
                   "n-shot": {t: settings.shots or 0 for t in settings.tasks},
                   "n-samples": {t: {"original": 9, "effective": settings.limit or 9}
                                 for t in settings.tasks}}
        return write_outputs(Path(run_dir), results, target=ModelTarget(model, "hf", {}, True,
                             model), settings=settings, seconds=0.5, say=lambda m: None)


def test_benchmarks_run_for_base_and_adapters_with_deltas(tmp_path: Path) -> None:
    text = recipe(tmp_path).replace('seed = 3\n', 'seed = 3\nbenchmarks = ["mini_mmlu"]\n')
    text += '\n[experiment.benchmark_settings]\nlimit = 4\nshots = 0\n'
    trainer, benchmarker = StubTrainer(), StubBenchmarker()
    report, said = run(text, trainer, benchmarker=benchmarker)
    exp = tmp_path / "exp"
    assert benchmarker.calls == ["local", f"hf:{exp / 'adapters' / 'filtered'}",
                                 f"hf:{exp / 'adapters' / 'random'}"]
    for step in ("benchmark-base", "benchmark-filtered", "benchmark-random"):
        assert ledger(exp)[step]["finished"]
    body = report.read_text()
    assert "## General ability (lm-evaluation-harness)" in body
    assert "| task | metric | docs | base | filtered (Δ vs base) | random (Δ vs base) |" in body
    assert "| mini_mmlu | acc | 4 | 0.5000 | 0.7500 (+0.2500) | 0.2500 (-0.2500) |" in body
    assert "0 shots, first 4 documents per task" in body
    data = json.loads((exp / "report.json").read_text())
    assert data["benchmarks"]["filtered"]["rows"][0]["value"] == 0.75

    _, said = run(text, trainer, benchmarker=benchmarker)  # resumes: nothing re-benchmarked
    assert len(benchmarker.calls) == 3
    assert {"benchmark-base", "benchmark-filtered", "benchmark-random"} <= skipped(said)


def test_benchmarks_in_the_plan_and_bad_settings() -> None:
    table: dict[str, Any] = {"dir": "x", "rate": {"data": "pool.json"},
                             "bench": {"path": "b.jsonl"},
                             "datasets": {"a": {"top": 1}, "b": {"top": 2}},
                             "benchmarks": ["mmlu", "bbh"]}
    exp = Experiment.from_table(table)
    assert exp.plan()[-4:] == ["benchmark-base", "benchmark-a", "benchmark-b", "report"]
    with pytest.raises(UserError, match="not a task name"):
        Experiment.from_table({**table, "benchmarks": ["mm lu"]})
    with pytest.raises(UserError, match="give the tasks too"):
        Experiment.from_table({**{k: v for k, v in table.items() if k != "benchmarks"},
                               "benchmark_settings": {"limit": 3}})
    with pytest.raises(UserError, match="unknown key 'bogus'"):
        Experiment.from_table({**table, "benchmark_settings": {"bogus": 1}})


def test_compare_step_writes_no_credentials(tmp_path: Path) -> None:
    """The compare step is `compare`'s own function: its config.json shows the judge redacted."""
    from synthcodec.experiment import compare_answers
    from synthcodec.session import RunOptions

    rows = [{"id": i, "question": f"Q{i}", "answer": "GOOD ANSWER"} for i in range(2)]
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "answer": "MEH"} for r in rows])
    got = compare_answers(Path(a), Path(b), tmp_path / "c", labels=("a", "b"), bench="bench",
                          judge="m@https://user:secret@judge.example/v1", judge_max_tokens=32,
                          reasks=0, options=RunOptions(no_cache=True, progress=False),
                          backend=FakeBackend(["8 4\nThe first is better."], name="judge"))
    assert got["pairs"] == 2 and got["failed"] == 0
    config = (tmp_path / "c" / "config.json").read_text()
    assert "secret" not in config and "m@https://***@judge.example/v1" in config
