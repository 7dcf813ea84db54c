"""The Python API on scripted models: paths, lists of dicts and Datasets in, rows out; the
same run directory as the command (a second call resumes); inside a running event loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import synthcodec as sc
from synthcodec.llm import Request
from tests.helpers import write_jsonl


def alpaca(n: int) -> list[dict[str, Any]]:
    return [{"instruction": f"Task {i}", "input": "", "output": f"answer {i}"} for i in range(n)]


def score_by_task(request: Request) -> str:
    """Rates task i with i mod 6 (so scores 0..5 appear)."""
    text = request.messages[-1]["content"]
    i = int(text.split("Task ", 1)[1].split()[0].strip("<>-=:"))
    return f"{i % 6}\nbecause task {i}"


def test_rate_then_select_from_a_list_of_dicts(tmp_path: Path) -> None:
    judge = sc.FakeBackend(score_by_task)
    rated = sc.rate(alpaca(12), judge="my-judge", backend=judge, run_dir=tmp_path / "rate")
    assert len(rated) == 12 and rated.failed == [] and rated.rejected == []
    assert [r["score"] for r in rated.rows] == [i % 6 for i in range(12)]
    assert rated.path == tmp_path / "rate" / "output.jsonl"
    sent = len(judge.calls)
    again = sc.rate(alpaca(12), judge="my-judge", backend=judge, run_dir=tmp_path / "rate")
    assert len(judge.calls) == sent and again.summary.resumed == 12  # resumed, nothing re-sent

    kept = sc.select(rated, min_score=4.5)
    assert [r["instruction"] for r in kept.rows] == ["Task 5", "Task 11"]
    assert kept.summary["kept"] == 2 and kept.path.exists()
    top = sc.select(rated, top=3, format="alpaca", output=tmp_path / "top.json")
    assert len(json.loads(top.path.read_text())) == 3
    assert top.rows == json.loads(top.path.read_text())  # the rows it wrote, not []


def test_a_dataset_and_a_path_work_too(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(alpaca(4))
    judge = sc.FakeBackend(score_by_task)
    from_ds = sc.rate(ds, judge="j", backend=judge, run_dir=tmp_path / "a")
    path = write_jsonl(tmp_path / "in.jsonl", alpaca(4))
    from_path = sc.rate(path, judge="j", backend=judge, run_dir=tmp_path / "b")
    strip = [{k: v for k, v in r.items() if k != "_synthcodec"} for r in from_ds.rows]
    assert strip == [{k: v for k, v in r.items() if k != "_synthcodec"} for r in from_path.rows]


def test_default_run_dir_is_named_by_input_and_settings(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    judge = sc.FakeBackend(score_by_task)
    a = sc.rate(alpaca(3), judge="j", backend=judge)
    b = sc.rate(alpaca(3), judge="j", backend=judge, dimension="helpfulness")
    assert a.run_dir.parent == Path("runs") and a.run_dir != b.run_dir
    assert sc.rate(alpaca(3), judge="j", backend=judge).run_dir == a.run_dir


def test_complete_answer_and_compare(tmp_path: Path) -> None:
    done = sc.complete([{"text": "hi"}, {"text": "there"}], prompt_field="text",
                       model="m", backend=sc.FakeBackend(lambda r: "OK"), run_dir=tmp_path / "c")
    assert [r["response"] for r in done.rows] == ["OK", "OK"]
    assert done.rows[0]["text"] == "hi" and "prompt" not in done.rows[0]

    bench = write_jsonl(tmp_path / "q.jsonl", [{"question_id": i, "text": f"Question {i}?",
                                                 "category": "c"} for i in range(3)])
    good = sc.answer(bench, model="good", output=tmp_path / "good.jsonl",
                     backend=sc.FakeBackend(lambda r: "GOOD answer", name="good"))
    bad = sc.answer(bench, model="bad", output=tmp_path / "bad.jsonl",
                    backend=sc.FakeBackend(lambda r: "meh", name="bad"))  # its own cache key
    assert len(good) == 3 and good.rows[0]["answer"] == "GOOD answer" and len(bad) == 3

    def judge(request: Request) -> str:
        text = "\n".join(m["content"] for m in request.messages)
        first = text.rindex("GOOD answer") < text.rindex("meh")
        return "8 3" if first else "3 8"

    result = sc.compare(tmp_path / "good.jsonl", tmp_path / "bad.jsonl", judge="j",
                        backend=sc.FakeBackend(judge), run_dir=tmp_path / "cmp")
    assert result.exit_code == 0 and len(result.verdicts) == 3
    assert result.report["total"]["codeclm"] == {"win": 3, "tie": 0, "lose": 0, "crr": 1.0}


def test_generate_with_scripted_models(tmp_path: Path) -> None:
    # The Contrastive Filtering loop's own scripted strong and target models.
    from tests.unit.test_codeclm_loop import SEEDS, strong_model, target_model

    out = sc.generate(SEEDS, strong="s", target="t", n=2, run_dir=tmp_path / "g",
                      backends={"strong": sc.FakeBackend(strong_model),
                                "target": sc.FakeBackend(target_model)},
                      codec=dict(pool_size=4, per_metadata=2, max_iterations=3))
    assert out.summary is not None
    assert len(out.pairs) == 2
    for pair in out.pairs:
        assert pair["instruction"] and abs(pair["gap"]) > 3


def test_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    judge = sc.FakeBackend(score_by_task)

    async def notebook_cell() -> tuple[int, int]:
        plain = sc.rate(alpaca(3), judge="j", backend=judge, run_dir=tmp_path / "a")
        awaited = await sc.arate(alpaca(3), judge="j", backend=judge, run_dir=tmp_path / "b")
        return len(plain), len(awaited)

    assert asyncio.run(notebook_cell()) == (3, 3)


def test_bad_calls_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown option"):
        sc.rate(alpaca(1), judge="j", backend=sc.FakeBackend(["1"]), concurency=3)
    with pytest.raises(TypeError, match=r"json_mode= is now json="):  # a documented rename
        sc.rate(alpaca(1), judge="j", backend=sc.FakeBackend(["1"]), json_mode=True)
    with pytest.raises(sc.api.UserError, match="row 2 is a str"):
        sc.rate([{"instruction": "x", "output": "y"}, "oops"], judge="fake:echo")  # type: ignore[list-item]


def test_a_nan_in_a_list_of_dicts_is_named_by_its_row(tmp_path: Path) -> None:
    from synthcodec.errors import UserError

    rows = [*alpaca(2), {"instruction": "Task 9", "input": "", "output": "x", "w": float("nan")}]
    with pytest.raises(UserError, match=r"data row 3: .*w.* NaN"):
        sc.rate(rows, judge="j", backend=sc.FakeBackend(score_by_task), run_dir=tmp_path / "r")


def test_the_api_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rate and compare return their summaries and reports; with progress off (the API's
    default) nothing reaches stdout or stderr, not even the judge check they run first."""
    rows = [{"instruction": f"Task {i}", "input": "",
             "output": f"a full answer to task {i} in several words"} for i in range(6)]
    rated = sc.rate(rows, judge="j", backend=sc.FakeBackend(score_by_task),
                    run_dir=tmp_path / "rate", no_cache=True)
    assert len(rated) == 6 and rated.summary.judge_line  # the check ran and has a verdict
    assert (tmp_path / "rate" / "judge_card.json").exists()

    answers = [{"id": i, "question": f"Question {i}?",
                "answer": f"answer {i} from model {m} in quite a few words"} for i in range(4)
               for m in "x"]
    a = write_jsonl(tmp_path / "a.jsonl", answers)
    b = write_jsonl(tmp_path / "b.jsonl", [dict(r, answer=r["answer"].replace("x", "y"))
                                          for r in answers])
    result = sc.compare(a, b, judge="j", backend=sc.FakeBackend(lambda r: "8 4\nfirst"),
                        run_dir=tmp_path / "cmp", no_cache=True)
    assert result.exit_code == 0 and result.report["total"]["n"] == 4
    assert (tmp_path / "cmp" / "judge_card.json").exists()
    card = sc.judge_check([a, b], judge="j", backend=sc.FakeBackend(lambda r: "8 4\nfirst"),
                          output=tmp_path / "check", probes=2, no_cache=True)
    assert card.verdict and (tmp_path / "check" / "judge_card.json").exists()
    assert capsys.readouterr() == ("", "")


def test_generate_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """generate returns its summary: with progress off nothing reaches stdout or stderr,
    not its judge check, its stages' lines, the same-model warning, the summary or the cost
    (the command prints those)."""
    from tests.unit.test_codeclm_loop import SEEDS, strong_model

    same = sc.FakeBackend(strong_model)
    for _ in range(2):  # a fresh run, then a resumed one
        out = sc.generate(SEEDS, strong="s", target="s", n=2, run_dir=tmp_path / "g",
                          backends={"strong": same, "target": same}, no_cache=True,
                          codec=dict(pool_size=3, per_metadata=1, max_iterations=1))
        assert out.summary is not None and "same model" in out.summary["warnings"][0]
    assert (tmp_path / "g" / "judge_card.json").exists()  # the judge check ran
    assert (tmp_path / "g" / "summary.json").exists()
    assert capsys.readouterr() == ("", "")
