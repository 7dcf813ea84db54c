"""`synthcodec select`: selection rules, outputs, the rate → select → export path, CLI errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from synthcodec.errors import UserError
from synthcodec.llm import FakeBackend, Request
from synthcodec.session import RunOptions
from synthcodec.stages.rate import rate_file
from synthcodec.stages.select import sibling
from synthcodec.stages.select_rules import Rule, choose, open_source, read_values
from tests.helpers import cli


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- rules


def test_min_score_is_greater_or_equal() -> None:
    scores = [4.5, 4.4999, 5.0, 4.0, 4.5]
    assert set(choose(scores, Rule(min=4.5))) == {0, 2, 4}
    assert set(choose(scores, Rule())) == {0, 2, 4}  # the default: AlpaGasus' score ≥ 4.5
    assert choose(scores, Rule(min=5.0)) == [2]
    assert choose(scores, Rule(min=5.5)) == []


def test_top_k_breaks_ties_by_input_order() -> None:
    scores = [3.0, 5.0, 4.0, 5.0, 4.0, 4.0, 1.0]
    assert choose(scores, Rule(top=1)) == [1]
    assert choose(scores, Rule(top=3)) == [1, 3, 2]  # the first of the three 4.0s
    assert choose(scores, Rule(top=4)) == [1, 3, 2, 4]
    assert set(choose(scores, Rule(top=100))) == set(range(7))
    # The same input gives the same choice every time (no hash or set-order dependence).
    assert all(choose(scores, Rule(top=3)) == [1, 3, 2] for _ in range(20))


def test_random_is_reproducible_and_seed_dependent(tmp_path: Path) -> None:
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1000)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = open_source(data, ())
    pick = [choose(read_values(src, Rule(by="random", seed=s)), Rule(by="random", top=100))
            for s in (1, 1, 2)]
    assert len(pick[0]) == 100 and pick[0] == pick[1] and pick[0] != pick[2]
    assert set(choose(read_values(src, Rule(by="random", seed=1)),
                      Rule(by="random", top=5000))) == set(range(1000))


def test_a_rule_says_how_much() -> None:
    with pytest.raises(UserError, match="give only one of --top and --frac"):
        Rule(top=1, frac=0.5).checked()
    with pytest.raises(UserError, match="--by ifd: say how much to keep"):
        Rule(by="ifd").checked()
    with pytest.raises(UserError, match="--diverse kcenter needs the size"):
        Rule(by="ifd", min=0.2, diverse="kcenter").checked()


def test_sibling_names() -> None:
    assert sibling(Path("out/kept.jsonl"), ".rejected.jsonl") == Path("out/kept.rejected.jsonl")
    assert sibling(Path("kept.json"), ".summary.json") == Path("kept.summary.json")
    assert sibling(Path("kept_hf"), ".scores.png") == Path("kept_hf.scores.png")


# ----------------------------------------------------------------------------- end to end


def score_by_task(request: Request) -> str:
    n = int(re.search(r"Task (\d+)", request.messages[-1]["content"]).group(1))  # type: ignore[union-attr]
    return f"{[5, 4.5, 4, 3, 0][n % 5]}\nbecause"


@pytest.fixture
def rated_run(tmp_path: Path) -> Path:
    rows = [{"instruction": f"Task {i}", "input": "" if i % 2 else f"ctx {i}", "output": f"ans {i}"}
            for i in range(10)]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(rows))
    run = tmp_path / "run"
    summary = rate_file(data, run, judge="fake:x", options=RunOptions(progress=False),
                        backends={"judge": FakeBackend(score_by_task)})
    assert summary.kept == 10
    return run


def test_rate_select_export_alpaca(rated_run: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kept.json"
    assert cli("select", str(rated_run), "--min-score", "4.5", "--format", "alpaca",
                    "-o", str(out)) == 0
    kept = json.loads(out.read_text())
    assert [k["instruction"] for k in kept] == ["Task 0", "Task 1", "Task 5", "Task 6"]
    assert kept[1] == {"instruction": "Task 1", "input": "", "output": "ans 1"}
    rejected = read_jsonl(tmp_path / "kept.rejected.jsonl")
    assert len(rejected) == 6 and all(r["score"] < 4.5 for r in rejected)
    assert {"score", "explanation", "judge_text"} <= set(rejected[0])
    summary = json.loads((tmp_path / "kept.summary.json").read_text())
    assert (summary["rated"], summary["kept"], summary["rejected"]) == (10, 4, 6)
    assert summary["kept_fraction"] == 0.4
    assert summary["histogram"]["4.5"] == 2 and summary["histogram"]["5"] == 2
    png = rated_run / "scores.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err
    assert "kept 4 of 10 (40.0%): score ≥ 4.5" in err
    assert re.search(r"4\.5 \| #+ +2  20\.0%", err)


def test_default_rule_is_min_score_4_5(rated_run: Path, tmp_path: Path) -> None:
    assert cli("select", str(rated_run), "-o", str(tmp_path / "k.jsonl")) == 0
    rows = read_jsonl(tmp_path / "k.jsonl")
    assert [r["score"] for r in rows] == [5, 4.5, 5, 4.5]
    rule = json.loads((tmp_path / "k.summary.json").read_text())["rule"]
    assert (rule["by"], rule["min"], rule["text"]) == ("score", 4.5, "score ≥ 4.5")


def test_top_and_openai_format(rated_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "top.jsonl"
    assert cli("select", str(rated_run), "--top", "3", "--format", "openai", "-o", str(out)) == 0
    rows = read_jsonl(out)
    # Scores 5 (tasks 0, 5) then 4.5 (task 1 before task 6); written in input order.
    assert [r["messages"][0]["content"] for r in rows] == ["Task 0\n\nctx 0", "Task 1", "Task 5"]
    assert rows[0]["messages"][1] == {"role": "assistant", "content": "ans 0"}


def test_random_and_sharegpt_from_a_plain_file(rated_run: Path, tmp_path: Path) -> None:
    rated = rated_run / "output.jsonl"
    picks = []
    for seed in ("1", "1", "2"):
        out = tmp_path / f"r{seed}.json"
        assert cli("select", str(rated), "--random", "4", "--seed", seed, "--format",
                        "sharegpt", "-o", str(out)) == 0
        picks.append(json.loads(out.read_text()))
    assert len(picks[0]) == 4 and picks[0] == picks[1] and picks[0] != picks[2]
    assert picks[0][0]["conversations"][0]["from"] == "human"
    assert (tmp_path / "r1.random.png").exists()  # a file input: the plot goes beside OUT


def test_file_with_other_column_names(tmp_path: Path) -> None:
    data = tmp_path / "mine.csv"
    data.write_text("q,a,rating\nhello,hi,5\nbye,ciao,2\n")
    out = tmp_path / "k.json"
    assert cli("select", str(data), "--field", "instruction=q", "--field", "response=a",
                    "--score-field", "rating", "--format", "alpaca", "-o", str(out)) == 0
    assert json.loads(out.read_text()) == [{"instruction": "hello", "input": "", "output": "hi"}]


# ----------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize(("args", "message"), [
    (["--random", "3", "--top", "3"], "give only one of --random and --top"),
    (["--top", "3", "--frac", "0.5"], "give only one of --top and --frac"),
    (["--min-score", "4", "--min", "3"], "give only one of --min-score and --min"),
    (["--by", "length"], "--by length: say how much to keep"),
    (["--seed", "3"], "--seed only applies to --by random"),
    (["--top", "0"], "--top"),
    (["--format", "xml"], "--format"),
    (["--field", "nonsense=x"], "unknown field"),
])
def test_usage_errors_exit_2(rated_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             args: list[str], message: str) -> None:
    out = tmp_path / "k.jsonl"
    assert cli("select", str(rated_run), "-o", str(out), *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unrated_file_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b", "score": 4}\n{"instruction": "c", "output": "d"}\n')
    assert cli("select", str(data), "-o", str(tmp_path / "k.jsonl")) == 2
    assert "d.jsonl:2: field 'score': missing" in capsys.readouterr().err


def test_unfinished_run_is_refused(rated_run: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((rated_run / "manifest.json").read_text())
    (rated_run / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    assert cli("select", str(rated_run), "-o", str(tmp_path / "k.jsonl")) == 2
    assert "is not finished" in capsys.readouterr().err


def test_hf_without_datasets_says_which_extra(rated_run: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    assert cli("select", str(rated_run), "--format", "hf", "-o", str(tmp_path / "ds")) == 2
    assert "pip install 'synthcodec[hf]'" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.rejected.jsonl").exists()
