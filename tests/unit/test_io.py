"""Readers for every input format, and errors that name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthcodec.errors import InputError, UserError
from synthcodec.io import FieldSpec, extract, iter_rows, parse_field_map, scan_input, write_parquet

ROWS = [{"text": "a", "n": 1}, {"text": "b", "n": 2}]


def _write(path: Path, fmt: str) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif fmt == "json":
        path.write_text(json.dumps(ROWS))
    elif fmt == "csv":
        path.write_text("text,n\na,1\nb,2\n")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_each_format_reads_rows(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path / f"in.{fmt}", fmt)
    rows = [row for _, row in iter_rows(path)]
    assert [r["text"] for r in rows] == ["a", "b"]


def test_saved_hf_dataset_reads_without_datasets(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    table = pa.Table.from_pylist(ROWS)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (folder / "state.json").write_text(json.dumps(
        {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    assert [row["n"] for _, row in iter_rows(folder)] == [1, 2]


def test_field_mapping_and_types(tmp_path: Path) -> None:
    row = {"text": "hi", "n": 3}
    assert extract("f", 1, row, [FieldSpec("prompt")], {"prompt": "text"}) == {"prompt": "hi"}
    with pytest.raises(InputError, match=r"f:7: field 'n': expected str, got int"):
        extract("f", 7, row, [FieldSpec("n")], {})
    with pytest.raises(InputError, match=r"f:2: field 'prompt': missing \(map another column"):
        extract("f", 2, row, [FieldSpec("prompt")], {})
    assert extract("f", 1, row, [FieldSpec("input", required=False)], {}) == {}


def test_parse_field_map() -> None:
    assert parse_field_map(["prompt=text", " a = b "]) == {"prompt": "text", "a": "b"}
    with pytest.raises(UserError):
        parse_field_map(["prompt"])


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"prompt": "a"}\n{"prompt": \n', r"in.jsonl:2: malformed JSON"),
        (b'{"prompt": "a"}\n{"other": "b"}\n', r"in.jsonl:2: field 'prompt': missing"),
        (b'{"prompt": "a"}\n{"prompt": 5}\n', r"in.jsonl:2: field 'prompt': expected str, got int"),
        (b'{"prompt": "a"}\n[1, 2]\n', r"in.jsonl:2: expected a JSON object"),
        (b"", r"in.jsonl: the input has no rows"),
        (b'{"prompt": "caf\xe9"}\n', r"in.jsonl:1: not valid UTF-8"),
    ],
)
def test_bad_input_is_located(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        scan_input(path, [FieldSpec("prompt")], {})


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(iter_rows(tmp_path / "nope.jsonl"))
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(InputError, match="unknown file type"):
        list(iter_rows(tmp_path / "x.xml"))


def test_write_parquet_roundtrip(tmp_path: Path) -> None:
    rows = [{"a": i, "b": str(i)} for i in range(25)]
    assert write_parquet(tmp_path / "o.parquet", iter(rows), batch_size=10) == 25
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == rows


def test_write_parquet_finds_the_schema_over_every_batch(tmp_path: Path) -> None:
    # Null in the first batch and text later; a key and a nested key first seen in a later
    # batch: a schema taken from the first batch alone cannot hold them.
    rows = [{"a": None, "m": {"id": i}} for i in range(3)] + \
           [{"a": "text", "b": 1.5, "m": {"id": 3, "truncated": True}}]
    calls = []

    def source():
        calls.append(1)
        return iter(rows)

    assert write_parquet(tmp_path / "o.parquet", source, batch_size=2) == 4
    assert len(calls) == 2  # read twice from the source, never held whole
    back = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [r["a"] for r in back] == [None, None, None, "text"]
    assert back[0]["b"] is None and back[3]["b"] == 1.5
    assert back[3]["m"] == {"id": 3, "truncated": True} and back[0]["m"]["truncated"] is None


def test_write_parquet_refuses_a_column_of_two_types_in_one_line(tmp_path: Path) -> None:
    from synthcodec.errors import UserError

    for batch_size in (1, 10):  # across batches, and inside one
        with pytest.raises(UserError, match="two types"):
            write_parquet(tmp_path / "o.parquet", [{"a": 1}, {"a": "x"}], batch_size=batch_size)
        assert not (tmp_path / "o.parquet").exists()
