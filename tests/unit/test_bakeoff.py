"""A selection bake-off recipe on fake models: selectors by IFD, target IFD and score beside
random-k and longest-k, on one pool and one size; the report's table checked against the
files the steps wrote."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from synthcodec.errors import UserError
from synthcodec.experiment import Experiment, run_experiment
from synthcodec.llm.base import ContinuationRequest, Request
from synthcodec.llm.fake import FakeBackend
from synthcodec.stages.score import random_key, response_length
from tests.helpers import recipe_head
from tests.unit.test_experiment import QUESTIONS, StubTrainer

# Row i: instruction "Task i", a response of i + 1 words; its IFD (by the scorer) IFD[i],
# its target IFD TARGET[i], its rating SCORE[i].
N = 8
IFD = [0.9, 0.2, 0.8, 1.3, 0.7, 0.1, 0.95, 0.4]
TARGET = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6]
SCORE = [5, 1, 4, 2, 5, 3, 1, 4]


def task_of(text: str) -> int:
    found = re.search(r"Task (\d+)", text)
    assert found is not None, text
    return int(found.group(1))


def ifd_model(table: list[float], name: str) -> FakeBackend:
    def logprobs(request: ContinuationRequest) -> list[float]:
        n = len(request.continuation.split())
        asked = request.messages[-1]["content"]
        return [-table[task_of(asked)]] * n if asked else [-1.0] * n
    return FakeBackend(logprobs=logprobs, name=name)


def rater(request: Request) -> str:
    return f"{SCORE[task_of(request.messages[-1]['content'])]}\nok"


def judge(request: Request) -> str:
    """9 for a good answer, 4 for a meh one, in whichever order; a tie when both are meh."""
    text = request.messages[-1]["content"]
    good, meh = text.find("GOOD ANSWER"), text.find("MEH ANSWER")
    if good < 0:
        return "4 4\nequally meh"
    return "9 4\nfirst is better" if good < meh else "4 9\nsecond is better"


def recipe(tmp_path: Path, extra: str = "") -> str:
    head, bench = recipe_head(tmp_path, [{"instruction": f"Task {i}", "input": "",
                                          "output": " ".join(["word"] * (i + 1))}
                                         for i in range(N)], QUESTIONS)
    return head + f"""
[experiment.bakeoff]
size = 3
selectors = ["ifd", "target_ifd", "score"]
{extra}
[experiment.train]
max_steps = 1
[experiment.bench]
path = "{bench}"
[experiment.compare]
judge_max_tokens = 32
"""


def answers(name: str) -> FakeBackend:
    # ifd's adapter answers well, the others badly; so ifd beats random on every question.
    return FakeBackend(lambda r: "GOOD ANSWER" if name == "ifd" else "MEH ANSWER", name=name)


def table_rows(report: str) -> dict[str, list[str]]:
    section = report.split("## Selection bake-off")[1].split("\n## ")[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: cells for cells in
            ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:])} | {"": head}


def test_bakeoff_report_matches_the_files(tmp_path: Path) -> None:
    text = recipe(tmp_path)
    exp = Experiment.from_table(tomllib.loads(text)["experiment"])
    names = [d.name for d in exp.datasets]
    assert names == ["ifd", "target_ifd", "score", "random", "longest"]
    assert exp.compare.pairs == [(n, "random") for n in names if n != "random"]
    assert exp.plan()[:3] == ["rate", "score", "data-ifd"]
    models: dict[str, Any] = {"rate": FakeBackend(rater), "compare": FakeBackend(judge),
                              "score": ifd_model(IFD, "scorer"),
                              "score:target": ifd_model(TARGET, "target")}
    models.update({f"answer:{n}": answers(n) for n in names})
    report = run_experiment(exp, backends=models, trainer=StubTrainer(), progress=False,
                            say=lambda m: None).passes["report"].read_text()
    root = tmp_path / "exp"

    def rows(name: str) -> list[dict[str, str]]:
        return json.loads((root / "data" / f"{name}.json").read_text())

    def tasks(name: str) -> set[int]:
        return {task_of(r["instruction"]) for r in rows(name)}

    # Each selector on its own signal: IFD < 1 highest (task 3's 1.3 is flagged), the
    # target's IFD, the score (ties: earlier rows), the longest, and a seeded draw.
    assert tasks("ifd") == {6, 0, 2}
    assert tasks("target_ifd") == {1, 3, 5}
    assert tasks("score") == {0, 4, 2}
    assert tasks("longest") == {7, 6, 5}
    keys = [random_key(0, f"Task {i}", "", " ".join(["word"] * (i + 1))) for i in range(N)]
    assert tasks("random") == set(sorted(range(N), key=lambda i: -keys[i])[:3])  # seed 0
    # The target's IFD came from the target model (the base, here "local").
    config = json.loads((root / "score" / "config.json").read_text())
    assert config["models"] == {"scorer": "local", "target": "local"}

    table = table_rows(report)
    head = table[""]
    assert head[:3] == ["dataset", "selector", "rows"]
    for name in names:
        cells = dict(zip(head, table[name]))
        assert cells["rows"] == "3"
        for other in names:  # overlaps, from the files
            assert cells[f"∩ {other}"] == str(len(tasks(name) & tasks(other)))
        lengths = [response_length(r["output"]) for r in rows(name)]
        assert cells["mean length"] == f"{sum(lengths) / len(lengths):.1f}"
        if name == "random":
            assert cells["vs random W/T/L"] == "–"
            continue
        total = json.loads((root / "compare" / f"{name}-vs-random" / "report.json")
                           .read_text())["total"]
        ag, cl = total["alpagasus"], total["codeclm"]
        assert cells["vs random W/T/L"] == f"{ag['win']}/{ag['tie']}/{ag['lose']}"
        assert cells["CRR"] == f"{100 * cl['crr']:.1f}%"
    assert dict(zip(head, table["ifd"]))["vs random W/T/L"] == "3/0/0"
    assert dict(zip(head, table["ifd"]))["selector"] == "top 3 by ifd (ifd < 1)"
    data = json.loads((root / "report.json").read_text())
    assert [b["dataset"] for b in data["bakeoff"]] == names


def test_bakeoff_without_baselines_and_bad_tables(tmp_path: Path) -> None:
    text = recipe(tmp_path).replace('selectors = ["ifd", "target_ifd", "score"]',
                                    'selectors = ["ifd", "score+minhash"]\nbaselines = false')
    exp = Experiment.from_table(tomllib.loads(text)["experiment"])
    assert [d.name for d in exp.datasets] == ["ifd", "score-minhash"]
    assert exp.datasets[1].rule == "top 3 by score, no near-duplicates"
    base: dict[str, Any] = {"dir": "x", "rate": {"data": "p.json"}, "bench": {"path": "b"}}
    with pytest.raises(UserError, match="'size'"):
        Experiment.from_table({**base, "bakeoff": {"selectors": ["ifd"]}})
    with pytest.raises(UserError, match="'random' is a baseline"):
        Experiment.from_table({**base, "bakeoff": {"size": 2, "selectors": ["random"]}})
    with pytest.raises(UserError, match="makes dataset 'ifd'"):
        Experiment.from_table({**base, "bakeoff": {"size": 2, "selectors": ["ifd"]},
                               "datasets": {"ifd": {"top": 2}}})


def test_datasets_take_any_selector(tmp_path: Path) -> None:
    base: dict[str, Any] = {"dir": "x", "bench": {"path": "b"},
                            "score": {"data": "pool.json", "limit": 10}}
    exp = Experiment.from_table({**base, "datasets": {
        "ifd": {"select": "ifd", "frac": 0.1}, "long": {"select": "length", "top": 5}}})
    assert exp.rate is None and exp.score is not None and exp.score.limit == 10
    assert [d.rule for d in exp.datasets] == ["top 10% by ifd (ifd < 1)", "top 5 by length"]
    assert exp.plan()[:3] == ["score", "data-ifd", "data-long"]
    with pytest.raises(UserError, match="selecting by score needs"):
        Experiment.from_table({**base, "datasets": {"a": {"top": 2}, "b": {"top": 3}}})
    with pytest.raises(UserError, match="say how much to keep"):
        Experiment.from_table({**base, "datasets": {"a": {"select": "ifd"},
                                                    "b": {"select": "length", "top": 3}}})
    with pytest.raises(UserError, match="'data' \\(the pool"):
        Experiment.from_table({"dir": "x", "bench": {"path": "b"}, "datasets": {
            "a": {"select": "length", "top": 2}, "b": {"select": "random", "top": 2}}})


def test_example_bakeoff_recipe_parses() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "examples" / "bakeoff.toml").read_text()
    exp = Experiment.from_table(tomllib.loads(text)["experiment"])
    assert [d.name for d in exp.datasets] == ["ifd", "ifd-minhash", "random", "longest"]
    assert exp.rate is None and exp.score is not None and exp.score.limit == 60
    assert all(d.top == 12 for d in exp.datasets)
