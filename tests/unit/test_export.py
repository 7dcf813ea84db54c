"""Exporters: record shapes, streamed atomic writes, the optional Hugging Face format."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthcodec.errors import InputError, MissingExtraError
from synthcodec.formats import (
    Example,
    alpaca_record,
    export,
    openai_record,
    sharegpt_record,
    write_alpaca,
    write_hf,
    write_openai,
    write_sharegpt,
)
from synthcodec.io import iter_rows

WITH_INPUT = Example.of(instruction="Translate.", input="Bonjour", output="Hello")
NO_INPUT = Example.of(instruction="Say hi.", output="Hi!")


def test_user_turn_joins_input_only_when_present() -> None:
    assert WITH_INPUT.messages[0]["content"] == "Translate.\n\nBonjour"
    assert NO_INPUT.messages[0]["content"] == "Say hi."
    assert Example.of("Say hi.", "Hi!", input="  ").messages[0]["content"] == "Say hi."
    assert WITH_INPUT.output == "Hello" and WITH_INPUT.input == "Bonjour"


def test_record_shapes() -> None:
    assert alpaca_record(NO_INPUT) == {"instruction": "Say hi.", "input": "", "output": "Hi!"}
    assert openai_record(WITH_INPUT) == {"messages": [
        {"role": "user", "content": "Translate.\n\nBonjour"},
        {"role": "assistant", "content": "Hello"}]}
    assert openai_record(NO_INPUT, system="Be brief.")["messages"][0] == {
        "role": "system", "content": "Be brief."}
    assert sharegpt_record(NO_INPUT) == {"conversations": [
        {"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]}


def test_files_round_trip(tmp_path: Path) -> None:
    examples = [WITH_INPUT, NO_INPUT, Example.of("Ünïcode ✓", "\"quoted\"\nnewline")]
    assert write_alpaca(tmp_path / "a.json", examples) == 3
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == [
        alpaca_record(e) for e in examples]
    assert write_openai(tmp_path / "o.jsonl", examples) == 3
    lines = (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [openai_record(e) for e in examples]
    assert write_sharegpt(tmp_path / "s.json", examples) == 3
    assert json.loads((tmp_path / "s.json").read_text()) == [sharegpt_record(e) for e in examples]
    # Our own reader accepts what we wrote.
    assert [row for _, row in iter_rows(tmp_path / "a.json")][2]["instruction"] == "Ünïcode ✓"


def test_empty_exports_are_valid(tmp_path: Path) -> None:
    assert write_alpaca(tmp_path / "a.json", []) == 0
    assert json.loads((tmp_path / "a.json").read_text()) == []
    assert write_openai(tmp_path / "o.jsonl", []) == 0
    assert (tmp_path / "o.jsonl").read_text() == ""


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("[]\n")  # an earlier export must survive a failed one

    def broken() -> Iterator[Example]:
        yield NO_INPUT
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_alpaca(target, broken())
    assert target.read_text() == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_export_maps_columns_and_names_bad_rows(tmp_path: Path) -> None:
    rows = [(1, {"q": "a", "r": "b", "score": 5}), (2, {"q": "c", "score": 5})]
    with pytest.raises(InputError, match="src.jsonl:2: field 'r': missing"):
        export("alpaca", tmp_path / "a.json", rows, {"instruction": "q", "response": "r"},
               "src.jsonl")
    assert not (tmp_path / "a.json").exists()
    # The mapped columns land in the Alpaca fields; a column not mapped (score) is left out.
    good = [(1, {"q": "a", "r": "b", "score": 5}), (3, {"q": "c", "r": "d", "i": "ctx"})]
    mapping = {"instruction": "q", "response": "r", "input": "i"}
    assert export("alpaca", tmp_path / "a.json", good, mapping) == 2
    assert json.loads((tmp_path / "a.json").read_text()) == [
        {"instruction": "a", "input": "", "output": "b"},
        {"instruction": "c", "input": "ctx", "output": "d"}]
    assert export("jsonl", tmp_path / "k.jsonl", rows, {}) == 2  # jsonl keeps whole rows
    lines = (tmp_path / "k.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [row for _, row in rows]


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export("xml", tmp_path / "x", [], {})


def test_hf_needs_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingExtraError, match=r"synthcodec\[hf\]"):
        write_hf(tmp_path / "ds", [NO_INPUT])


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None,
                    reason="the optional 'datasets' package (synthcodec[hf]) is not installed")
def test_hf_dataset_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    assert write_hf(target, [WITH_INPUT, NO_INPUT]) == 2
    assert write_hf(target, [NO_INPUT]) == 1  # replacing an existing dataset folder
    rows = [row for _, row in iter_rows(target)]  # our pyarrow reader, no `datasets` needed
    assert rows == [alpaca_record(NO_INPUT)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
