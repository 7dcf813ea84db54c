"""`answer` and `compare` end to end on FakeBackend; pairing; per-question outcomes; report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import synthcodec.session as session
from synthcodec.errors import UserError
from synthcodec.judging.pairwise import pair_schema
from synthcodec.llm import FakeBackend, Request
from synthcodec.records import reason_of
from synthcodec.report.compare import summarize
from synthcodec.stages.compare import PairSpec, pair_answers
from tests.helpers import cli, read_jsonl

RESULTS = ("win", "tie", "lose")
# A's outcome for every (order-1 result, order-2 result), straight from methods.md §3.
ALPAGASUS = {("win", "win"): "win", ("win", "tie"): "win", ("tie", "win"): "win",
             ("win", "lose"): "tie", ("lose", "win"): "tie", ("tie", "tie"): "tie",
             ("lose", "tie"): "lose", ("tie", "lose"): "lose", ("lose", "lose"): "lose"}
CODECLM = {k: (k[0] if k[0] == k[1] and k[0] != "tie" else "tie") for k in ALPAGASUS}


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def fenced(request: Request, label: str) -> str:
    user = request.messages[-1]["content"] if len(request.messages) <= 2 else \
        request.messages[1]["content"]
    m = re.search(rf"<<<BEGIN (DATA-\w+) {label}>>>\n(.*?)\n<<<END \1 {label}>>>", user, re.S)
    assert m, label
    return m.group(2)



@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeBackend]:
    """Model specs resolve to fake backends (the CLI never loads a real model here)."""
    made: dict[str, FakeBackend] = {}

    def quality_judge(request: Request) -> str:
        # Scores each shown answer by its content: "GOOD" answers 8, others 4 (no position bias).
        s1 = 8 if "GOOD" in fenced(request, "ASSISTANT 1 ANSWER") else 4
        s2 = 8 if "GOOD" in fenced(request, "ASSISTANT 2 ANSWER") else 4
        return f"{s1} {s2}\nThe better answer is more helpful."

    def scripted_judge(request: Request) -> str:
        # Questions are named "q-R1-R2": give A result R1 in the first order, R2 in the second.
        _, r1, r2 = fenced(request, "QUESTION").split("-")
        a_first = fenced(request, "ASSISTANT 1 ANSWER") == "answer A"
        want = r1 if a_first else r2
        a, b = {"win": (8, 5), "tie": (6, 6), "lose": (5, 8)}[want]
        return f"{a} {b}" if a_first else f"{b} {a}"

    replies = {
        "model-a": lambda r: "GOOD answer to: " + r.messages[-1]["content"],
        "model-b": lambda r: "meh",
        "judge": quality_judge,
        "scripted": scripted_judge,
        "position": lambda r: "9 2\nThe first one.",  # always prefers whichever is shown first
        # Scores only questions containing "easy"; echoes the marker otherwise (like a tiny model).
        "weak": lambda r: "6 5" if "easy" in fenced(r, "QUESTION") else "<<<BEGIN DATA-x",
        # Answers in JSON when asked with a schema (as llama.cpp's grammar forces), else text.
        "json": lambda r: ('{"score_1": 8, "score_2": 4, "explanation": "first is better"}'
                           if r.json_schema is not None else "7 7\nsame"),
    }

    def load(spec: str, **_: Any) -> FakeBackend:
        made.setdefault(spec, FakeBackend(replies[spec], name=spec))
        return made[spec]

    monkeypatch.setattr(session, "load_backend", load)
    monkeypatch.setattr(session, "check_spec", lambda spec: None)  # names from `replies`
    return made


# ------------------------------------------------------------------------------- pairing

def test_pair_by_id_tolerates_int_and_str(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [{"question_id": 1, "question": "Q1", "category": "c",
                                      "answer": " x "}, {"question_id": 2, "question": "Q2",
                                                         "answer": "y"}])
    b = write(tmp_path / "b.jsonl", [{"question_id": "2", "text": "yy"},
                                     {"question_id": "1", "text": "xx"}])
    pairs = pair_answers("v", str(a), str(b), PairSpec())
    assert [(p.question_id, p.question, p.answer_a, p.answer_b, p.category) for p in pairs] == \
        [(1, "Q1", "x", "xx", "c"), (2, "Q2", "y", "yy", None)]


def test_pair_by_instruction_and_input(tmp_path: Path) -> None:
    rows = [{"instruction": "Fix this.\n", "input": "me go", "response": "\n\nI go."},
            {"instruction": "Tell a joke.", "input": "", "response": "Ha."}]
    a = write(tmp_path / "a.jsonl", rows)
    b = write(tmp_path / "b.jsonl", [dict(r, response="other") for r in reversed(rows)])
    with pytest.raises(UserError, match="--key instruction,input"):
        pair_answers("s", str(a), str(b), PairSpec())
    pairs = pair_answers("s", str(a), str(b), PairSpec(key=("instruction", "input")))
    assert [(p.question, p.answer_a, p.answer_b) for p in pairs] == \
        [("Fix this.\n\n\nme go", "I go.", "other"), ("Tell a joke.", "Ha.", "other")]


def test_pairing_errors_list_missing_and_repeated(tmp_path: Path, capsys: Any) -> None:
    a = write(tmp_path / "a.jsonl", [{"id": i, "question": f"Q{i}", "answer": "x"}
                                     for i in (1, 2, 3, 3)])
    b = write(tmp_path / "b.jsonl", [{"id": i, "question": f"Q{i}", "answer": "y"}
                                     for i in (1, 4, 5)])
    with pytest.raises(UserError) as info:
        pair_answers("v", str(a), str(b), PairSpec())
    message = str(info.value)
    assert "present more than once in" in message and "a.jsonl: 3" in message
    assert re.search(r"missing from \S*b\.jsonl \(2\): 2; 3", message)
    assert re.search(r"missing from \S*a\.jsonl \(2\): 4; 5", message)
    assert cli("compare", str(a), str(b), "--judge", "judge", "-o", str(tmp_path / "r")) == 2
    assert "cannot pair" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing is written before pairing succeeds


def test_missing_key_field_names_file_line_field(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [{"instruction": "x", "input": "", "response": "r"},
                                     {"instruction": "y", "response": "r"}])
    with pytest.raises(UserError, match=r"a\.jsonl:2: field 'input': missing"):
        pair_answers("s", str(a), str(a), PairSpec(key=("instruction", "input")))


# ------------------------------------------------------------------------ outcomes per question

def test_per_question_outcomes_from_scripted_scores(tmp_path: Path, backends: Any,
                                                    capsys: Any) -> None:
    combos = [(r1, r2) for r1 in RESULTS for r2 in RESULTS]
    a = write(tmp_path / "a.jsonl", [{"question_id": f"{r1}{r2}", "question": f"q-{r1}-{r2}",
                                      "answer": "answer A"} for r1, r2 in combos])
    b = write(tmp_path / "b.jsonl", [{"question_id": f"{r1}{r2}", "question": f"q-{r1}-{r2}",
                                      "answer": "answer B"} for r1, r2 in combos])
    run = tmp_path / "run"
    assert cli("compare", str(a), str(b), "--judge", "scripted", "-o", str(run), "-q") == 0
    verdicts = {v["question_id"]: v for v in read(run / "output.jsonl")}
    for r1, r2 in combos:
        v = verdicts[f"{r1}{r2}"]
        assert (v["result_first"], v["result_second"]) == (r1, r2)
        assert v["alpagasus"] == ALPAGASUS[(r1, r2)], (r1, r2)
        assert v["codeclm"] == CODECLM[(r1, r2)], (r1, r2)
        assert v["inconsistent"] == (r1 != r2)
    report = json.loads((run / "report.json").read_text())
    total = report["total"]
    assert total["alpagasus"] == {"win": 3, "tie": 3, "lose": 3, "score": 1.0}
    assert total["codeclm"]["win"] == 1 and total["codeclm"]["tie"] == 7
    assert total["codeclm"]["crr"] == pytest.approx(8 / 9)
    assert total["position_inconsistency"] == pytest.approx(6 / 9)
    # The report can be rebuilt from the saved verdicts alone.
    assert summarize(read_jsonl(run / "output.jsonl")).total.as_dict() == total


def test_position_biased_judge_gives_all_ties(tmp_path: Path, backends: Any) -> None:
    a = write(tmp_path / "a.jsonl", [{"id": i, "question": f"Q{i}", "answer": "GOOD"}
                                     for i in range(4)])
    b = write(tmp_path / "b.jsonl", [{"id": i, "question": f"Q{i}", "answer": "bad"}
                                     for i in range(4)])
    assert cli("compare", str(a), str(b), "--judge", "position", "-o", str(tmp_path / "r"),
               "-q") == 0
    total = json.loads((tmp_path / "r" / "report.json").read_text())["total"]
    assert (total["alpagasus"]["tie"], total["codeclm"]["tie"]) == (4, 4)
    assert total["position_inconsistency"] == 1.0


def test_unjudged_pairs_are_counted_and_retried(tmp_path: Path, backends: dict[str, FakeBackend],
                                                capsys: Any) -> None:
    qs = ["easy one", "hard one", "easy two", "hard two"]
    a = write(tmp_path / "a.jsonl", [{"id": i, "question": q, "answer": "x"}
                                     for i, q in enumerate(qs)])
    b = write(tmp_path / "b.jsonl", [{"id": i, "question": q, "answer": "y"}
                                     for i, q in enumerate(qs)])
    run = tmp_path / "r"
    assert cli("compare", str(a), str(b), "--judge", "weak", "--reasks", "1", "-o", str(run),
               "-q") == 0
    captured = capsys.readouterr()
    assert re.search(r"a\s+2\s+2\s+0/2/0", captured.out)  # N 2, failed 2; first-shown bias
    assert "2 pairs could not be judged" in captured.err
    failed = read(run / "failed.jsonl")
    assert [f["question"] for f in failed] == ["hard one", "hard two"]
    assert "no pair of scores" in reason_of(failed[0])
    report = json.loads((run / "report.json").read_text())
    assert (report["failed"], report["total"]["n"], report["total"]["failed"]) == (2, 2, 2)
    assert (run / "chart.png").exists() and "could not be judged" in (run / "report.md").read_text()
    calls = len(backends["weak"].calls)
    assert calls == 2 * 2 + 2 * 2 * 2  # judged pairs: 2 orders; failed: 2 orders x 2 tries
    # A re-run retries only the failed pairs (their requests now come from the cache).
    assert cli("compare", str(a), str(b), "--judge", "weak", "--reasks", "1", "-o", str(run),
               "-q") == 0
    assert len(backends["weak"].calls) == calls
    assert "resumed 2" in capsys.readouterr().err


def test_no_verdict_at_all_still_prints_table_and_chart(tmp_path: Path, backends: Any,
                                                        capsys: Any) -> None:
    a = write(tmp_path / "a.jsonl", [{"id": 1, "question": "hard", "answer": "x"}])
    b = write(tmp_path / "b.jsonl", [{"id": 1, "question": "hard", "answer": "y"}])
    # Nothing could be judged: the table and chart still come, and the exit code says so.
    assert cli("compare", str(a), str(b), "--judge", "weak", "--reasks", "0", "-o",
               str(tmp_path / "r"), "-q") == 1
    assert re.search(r"a\s+0\s+1\s+–", capsys.readouterr().out)
    assert (tmp_path / "r" / "chart.png").read_bytes()[:4] == b"\x89PNG"


# -------------------------------------------------------------------------- CLI end to end

def test_answer_then_compare_end_to_end(tmp_path: Path, backends: dict[str, FakeBackend],
                                        capsys: Any) -> None:
    bench = write(tmp_path / "vicuna.jsonl", [
        {"question_id": i, "text": f"Question {i}?", "category": "math" if i % 2 else "writing"}
        for i in range(1, 7)])
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert cli("answer", str(bench), "--model", "model-a", "-o", str(a), "-q") == 0
    assert cli("answer", str(bench), "--model", "model-b", "-o", str(b), "-q") == 0
    answers = read(a)
    assert [r["question_id"] for r in answers] == [1, 2, 3, 4, 5, 6]
    assert answers[0] == {"question_id": 1, "question": "Question 1?", "category": "math",
                          "answer": "GOOD answer to: Question 1?", "model": "model-a",
                          "bench": "vicuna", "truncated": False}
    assert (tmp_path / "a.jsonl.run" / "manifest.json").exists()
    capsys.readouterr()

    run = tmp_path / "runs" / "c"
    assert cli("compare", str(a), str(b), "--judge", "judge", "-o", str(run), "-q") == 0
    out = capsys.readouterr().out
    assert "A = model-a   B = model-b" in out
    assert re.search(r"vicuna\s+6\s+0\s+6/0/0\s+2\.000\s+6/0/0\s+100\.00%\s+0\.0%", out)
    assert "math" in out and "writing" in out  # the per-category table
    for name in ("output.jsonl", "report.md", "report.json", "chart.png", "manifest.json"):
        assert (run / name).exists(), name
    assert (run / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (run / "report.md").read_text()
    assert "| vicuna | 6 | 0 | 6/0/0 | 2.000 | 6/0/0 | 100.00% |" in md
    assert "vicuna / math" in md and "Capacity Recovery Ratio" in md
    verdict = read(run / "output.jsonl")[0]
    assert verdict["question_id"] == 1 and verdict["category"] == "math"
    assert (verdict["score_a_first"], verdict["score_b_first"]) == (8, 4)
    assert (verdict["score_a_second"], verdict["score_b_second"]) == (8, 4)
    assert len(backends["judge"].calls) == 12  # every pair, both orders

    # Re-running resumes from the journal: no judge request is sent again.
    assert cli("compare", str(a), str(b), "--judge", "judge", "-o", str(run), "-q") == 0
    assert len(backends["judge"].calls) == 12
    assert "resumed 6" in capsys.readouterr().err


def test_several_benchmarks_give_one_row_each_and_a_total(tmp_path: Path, backends: Any,
                                                          capsys: Any) -> None:
    good = [{"id": i, "question": f"Q{i}", "answer": "GOOD"} for i in range(3)]
    bad = [{"id": i, "question": f"Q{i}", "answer": "bad"} for i in range(3)]
    g, x = write(tmp_path / "g.jsonl", good), write(tmp_path / "x.jsonl", bad)
    run = tmp_path / "r"
    assert cli("compare", "--pair", "first", str(g), str(x), "--pair", "second", str(x), str(g),
               "--judge", "judge", "-o", str(run), "-q") == 0
    out = capsys.readouterr().out
    assert re.search(r"first\s+3\s+0\s+3/0/0", out) and re.search(r"second\s+3\s+0\s+0/0/3", out)
    assert re.search(r"total\s+6\s+0\s+3/0/3\s+1\.000", out)
    report = json.loads((run / "report.json").read_text())
    assert [r["bench"] for r in report["benchmarks"]] == ["first", "second"]
    assert "| **total** |" in (run / "report.md").read_text()
    assert cli("compare", "--pair", "same", str(g), str(x), "--pair", "same", str(x), str(g),
               "--judge", "judge", "-o", str(tmp_path / "r2")) == 2


def test_answer_resumes_and_rejects_duplicate_ids(tmp_path: Path,
                                                  backends: dict[str, FakeBackend],
                                                  capsys: Any) -> None:
    bench = write(tmp_path / "k.jsonl", [{"id": "k1", "prompt": "Hi"},
                                         {"id": "k2", "prompt": "Yo"}])
    out = tmp_path / "ans.jsonl"
    assert cli("answer", str(bench), "--model", "model-a", "-o", str(out), "-q") == 0
    assert cli("answer", str(bench), "--model", "model-a", "-o", str(out), "-q") == 0
    assert len(backends["model-a"].calls) == 2
    assert [r["bench"] for r in read(out)] == ["koala", "koala"]
    dup = write(tmp_path / "d.jsonl", [{"id": "k1", "prompt": "Hi"}, {"id": "k1", "prompt": "Yo"}])
    assert cli("answer", str(dup), "--model", "model-a", "-o", str(tmp_path / "d.out"), "-q") == 2
    assert "more than once: k1" in capsys.readouterr().err


def test_compare_against_mock_server_runs_concurrently(tmp_path: Path, capsys: Any) -> None:
    """Through the real HTTP backend: 2 x 120 judge requests of 0.1 s each finish in parallel."""
    import asyncio
    import threading
    import time

    from tests.mock_server import MockServer

    def responder(body: dict[str, Any]) -> str:
        user = body["messages"][-1]["content"]
        first = re.search(r"ASSISTANT 1 ANSWER>>>\n(.*?)\n<<<END", user, re.S)
        return "7 3" if first and first.group(1) == "GOOD" else "3 7"

    ready, stop = threading.Event(), threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        async def main_() -> None:
            async with MockServer(latency=0.1, responder=responder) as server:
                holder["url"] = server.base_url
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
        asyncio.run(main_())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        n = 120
        a = write(tmp_path / "a.jsonl", [{"id": i, "question": f"Q{i}", "answer": "GOOD"}
                                         for i in range(n)])
        b = write(tmp_path / "b.jsonl", [{"id": i, "question": f"Q{i}", "answer": "bad"}
                                         for i in range(n)])
        started = time.monotonic()
        assert cli("compare", str(a), str(b), "--judge", f"judge@{holder['url']}",
                   "-o", str(tmp_path / "r"), "-q", "--no-cache") == 0
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
    total = json.loads((tmp_path / "r" / "report.json").read_text())["total"]
    assert total["codeclm"]["win"] == n
    assert elapsed < 12, f"{2 * n} requests of 0.1 s took {elapsed:.1f}s: not concurrent"


def test_judge_json_sends_the_schema_and_judge_text_does_not(tmp_path: Path, backends: Any,
                                                             capsys: Any) -> None:
    a = write(tmp_path / "a.jsonl", [{"id": i, "question": f"Q{i}", "answer": "x"}
                                     for i in range(3)])
    b = write(tmp_path / "b.jsonl", [{"id": i, "question": f"Q{i}", "answer": "y"}
                                     for i in range(3)])
    assert cli("compare", str(a), str(b), "--judge", "json", "--judge-json",
               "-o", str(tmp_path / "j"), "-q") == 0
    calls = backends["json"].calls
    assert len(calls) == 6 and all(c.json_schema == pair_schema() for c in calls)
    assert "judge answers in JSON" in capsys.readouterr().err
    verdicts = read(tmp_path / "j" / "output.jsonl")
    assert all(v["score_a_first"] == 8 and v["score_a_second"] == 4 for v in verdicts)
    config = json.loads((tmp_path / "j" / "config.json").read_text())
    assert config["judge_answer"] == "json"

    # --judge-text (and the default for a non-llama.cpp judge): the paper's score line.
    for flag, run in (("--judge-text", "t"), (None, "d")):
        backends["json"].calls.clear()
        args = ["compare", str(a), str(b), "--judge", "json", "-o", str(tmp_path / run), "-q",
                "--no-cache"]
        assert cli(*args, *([flag] if flag else [])) == 0
        assert len(backends["json"].calls) == 6
        assert all(c.json_schema is None for c in backends["json"].calls)
        assert all(v["score_a_first"] == 7 for v in read(tmp_path / run / "output.jsonl"))


def test_a_crash_mid_run_releases_the_run_directory(tmp_path: Path) -> None:
    """Any exception (not only a UserError) closes the run: the next compare may work in it."""
    from synthcodec.stages.compare import compare_files

    a = write(tmp_path / "a.jsonl", [{"id": 1, "question": "q", "answer": "GOOD"}])
    b = write(tmp_path / "b.jsonl", [{"id": 1, "question": "q", "answer": "bad"}])

    def crash(request: Request) -> str:
        raise RuntimeError("a bug in the judge")

    def run(judge: FakeBackend) -> int:
        return compare_files((str(a), str(b)), run_dir=tmp_path / "r", judge="j",
                             options=session.RunOptions(no_cache=True, progress=False),
                             backends={"judge": judge}).exit_code

    with pytest.raises(RuntimeError, match="a bug in the judge"):
        run(FakeBackend(crash))
    assert run(FakeBackend(["8 4\nA is better."])) == 0
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["exit_code"] == 0
