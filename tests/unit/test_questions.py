"""Benchmark readers: the four published formats, detection, --field mapping, located errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synthcodec.errors import InputError, UserError
from synthcodec.questions import Question, detect_bench, read_questions, resolve_format

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write(tmp_path: Path, rows: list[dict[str, Any]], name: str = "bench.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def questions(path: Path, bench: str | None = None,
              mapping: dict[str, str] | None = None) -> list[Question]:
    return list(read_questions(path, resolve_format(path, bench, mapping or {})))


@pytest.mark.parametrize(("row", "name"), [
    ({"question_id": 1, "text": "Hi?", "category": "generic"}, "vicuna"),
    ({"id": "t0", "motivation_app": "Gmail", "instruction": "Fix.",
      "instances": [{"input": "x", "output": "y"}]}, "self-instruct"),
    ({"idx": 3, "Skill": "Math", "Difficulty": 4, "Instruction": "Add."}, "wizardlm"),
    ({"id": "koala_1", "prompt": "Tell me"}, "koala"),
    ({"instruction": "a", "input": "", "output": "b"}, None),
])
def test_detect_from_fields(row: dict[str, Any], name: str | None) -> None:
    assert detect_bench(row) == name


def test_vicuna(tmp_path: Path) -> None:
    path = write(tmp_path, [{"question_id": 1, "text": "Hi?", "category": "generic"},
                            {"question_id": 2, "text": "Why?", "category": "math"}])
    assert questions(path) == [Question(1, "Hi?", "generic"), Question(2, "Why?", "math")]


def test_self_instruct_joins_instruction_and_input(tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"id": "t0", "instruction": "Fix the grammar.\n",
         "instances": [{"input": "me go", "output": "I go"}]},
        {"id": "t1", "instruction": "Tell a joke.", "instances": [{"input": "", "output": "..."}]},
        {"id": "t2", "instruction": "Translate.", "instances": [{"input": "a"}, {"input": "b"}]},
    ])
    got = questions(path)
    # The instruction as written, a blank line, the input: the layout training uses
    # (synthcodec.formats.join_instruction), so a tuned model is asked what it learned.
    assert got[0] == Question("t0", "Fix the grammar.\n\n\nme go")
    assert got[1] == Question("t1", "Tell a joke.")  # empty input adds nothing
    assert [q.id for q in got[2:]] == ["t2#0", "t2#1"]  # one question per instance
    assert got[3].text == "Translate.\n\nb"


def test_self_instruct_category_by_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "t0", "motivation_app": "Gmail", "instruction": "Fix.",
                             "instances": [{"input": "x"}]}])
    assert questions(path, mapping={"category": "motivation_app"})[0].category == "Gmail"


def test_wizardlm_and_koala(tmp_path: Path) -> None:
    wiz = write(tmp_path, [{"idx": 1, "Skill": "Math", "Difficulty": 1, "Instruction": "2+2?"}],
                "wiz.jsonl")
    assert questions(wiz) == [Question(1, "2+2?", "Math")]
    koala = write(tmp_path, [{"id": "koala_1", "prompt": "Hello"}], "koala.jsonl")
    assert questions(koala) == [Question("koala_1", "Hello", None)]
    # Named explicitly, aliases accepted.
    assert questions(wiz, bench="evol-instruct")[0].id == 1


def test_custom_fields(tmp_path: Path) -> None:
    path = write(tmp_path, [{"instruction": "Sum", "input": "1 2", "output": "3"},
                            {"instruction": "Greet", "input": "", "output": "hi"}])
    got = questions(path, mapping={"text": "instruction", "input": "input"})
    assert got == [Question(1, "Sum\n\n1 2"), Question(2, "Greet")]  # ids: row numbers
    path2 = write(tmp_path, [{"qid": "a", "q": "Why?", "topic": "t"}], "custom.jsonl")
    assert questions(path2, mapping={"id": "qid", "text": "q", "category": "topic"}) == \
        [Question("a", "Why?", "t")]


def test_unknown_format_is_a_located_error(tmp_path: Path) -> None:
    path = write(tmp_path, [{"instruction": "a", "output": "b"}])
    with pytest.raises(InputError, match=r"bench\.jsonl:1: cannot tell the benchmark format"):
        questions(path)
    with pytest.raises(UserError, match="unknown --bench"):
        questions(path, bench="mmlu")
    with pytest.raises(UserError, match="unknown field"):
        questions(path, mapping={"answer": "b", "text": "a"})


def test_missing_and_mistyped_fields_name_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, [{"question_id": 1, "text": "ok"}, {"question_id": 2, "txt": "no"}])
    with pytest.raises(InputError) as info:
        questions(path, bench="vicuna")
    assert (info.value.line, info.value.field) == (2, "text")
    bad = write(tmp_path, [{"id": "t", "instruction": "x", "instances": [{"input": 5}]}], "b.jsonl")
    with pytest.raises(InputError, match=r"instances\[0\]\.input.*expected str"):
        questions(bad)
    empty = write(tmp_path, [{"id": "t", "instruction": "x", "instances": []}], "c.jsonl")
    with pytest.raises(InputError, match="non-empty list"):
        questions(empty)


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent")
def test_real_benchmarks() -> None:
    vicuna = questions(SHARED / "bench" / "vicuna_test_set.jsonl")
    assert len(vicuna) == 80 and len({q.id for q in vicuna}) == 80
    assert all(q.category for q in vicuna)
    sinstruct = questions(SHARED / "bench" / "sinstruct_test_set.jsonl")
    assert len(sinstruct) == 252 and sinstruct[0].id == "user_oriented_task_0"
    assert "\n\n" in sinstruct[0].text
