"""Readers for every input format, and errors that name file, line and field."""

from __future__ import annotations

import json
import logging
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


# ---- issue 18: input that used to be read wrong, or crash ----------------------------------

def _cli_complete(capsys: pytest.CaptureFixture[str], src: Path, run: Path) -> tuple[int, str]:
    from tests.helpers import cli

    code = cli("complete", str(src), "-m", "fake:echo", "--no-cache", "-o", str(run))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name, content, expected", [
    # A repeated key: json.loads keeps the last value silently.
    ("dup.jsonl", '{"prompt": "A"}\n{"prompt": "A", "prompt": "B"}\n',
     ":2: field 'prompt': this key appears twice"),
    ("dup.json", '[{"prompt": "A"},\n {"prompt": "A", "note": {"x": 1, "x": 2}}]',
     ":2: field 'x': this key appears twice"),
    # A repeated CSV column: DictReader keeps the last column.
    ("dup.csv", "prompt,prompt,note\nA,B,c\n", ":1: field 'prompt': this column name appears twice"),
    ("unnamed.csv", "prompt,,\nA,B,c\n", ":1: two columns have no name"),
    # NaN / Infinity: Python reads them, strict JSON readers refuse what we would write.
    ("nan.jsonl", '{"prompt": "a", "w": 1.5}\n{"prompt": "b", "w": NaN}\n',
     ":2: field 'w': NaN is not a JSON number"),
    ("inf.jsonl", '{"prompt": "a", "meta": {"w": [1, -Infinity]}}\n',
     ":1: field 'meta.w[1]': -Infinity is not a JSON number"),
    ("big.jsonl", '{"prompt": "a", "w": 1e999}\n', ":1: field 'w': Infinity is not a JSON number"),
    # A lone surrogate: not encodable as UTF-8 (it crashed the record id, exit 1).
    ("surrogate.jsonl", '{"prompt": "a"}\n{"prompt": "b", "note": "x\\ud800y"}\n',
     ":2: field 'note': holds a lone surrogate"),
    ("surrogate_key.json", '[{"prompt": "a", "\\udc00": 1}]', ":1: field '\\udc00': this key holds a lone surrogate"),
    # 5,000 levels of nesting: RecursionError, exit 1, before.
    ("deep.jsonl", '{"prompt": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}\n",
     ":1: nested deeper than 100 levels"),
    ("deep.json", "[" * 5000 + "]" * 5000, ":1: nested deeper than 100 levels"),
    ("deep150.jsonl", '{"prompt": "a", "x": ' + "[" * 150 + "]" * 150 + "}\n",
     ":1: field 'x': nested deeper than 100 levels"),
])
def test_unreadable_values_exit_2_naming_the_place_and_write_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str,
        expected: str) -> None:
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    code, err = _cli_complete(capsys, src, tmp_path / "run")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {src}{expected}"), err
    assert not (tmp_path / "run").exists()


def test_parquet_nan_and_repeated_columns_are_refused(tmp_path: Path) -> None:
    nan = tmp_path / "nan.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "a", "w": 1.0}, {"prompt": "b",
                                                                      "w": float("nan")}]), nan)
    with pytest.raises(InputError, match=r"nan.parquet:2: field 'w': NaN is not a JSON number"):
        list(iter_rows(nan))
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array(["a"]), pa.array(["b"])], names=["prompt", "prompt"]), dup)
    with pytest.raises(InputError, match=r"dup.parquet: field 'prompt': this column name appears"):
        list(iter_rows(dup))


def test_deep_but_allowed_nesting_is_read(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "a", "x": ' + "[" * 99 + "]" * 99 + "}\n")
    assert [row["prompt"] for _, row in iter_rows(src)] == ["a"]
    src.write_text('{"prompt": "a", "x": ' + "[" * 100 + "]" * 100 + "}\n")
    with pytest.raises(InputError, match=r"in.jsonl:1: field 'x': nested deeper than 100"):
        list(iter_rows(src))


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_gzipped_inputs_are_read(tmp_path: Path, fmt: str) -> None:
    import gzip

    plain = _write(tmp_path / f"plain.{fmt}", fmt)
    packed = tmp_path / f"in.{fmt}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert [row for _, row in iter_rows(packed)] == [row for _, row in iter_rows(plain)]
    assert [row["text"] for _, row in iter_rows(packed)] == ["a", "b"]


def test_a_broken_gzip_file_is_bad_input(tmp_path: Path) -> None:
    import gzip

    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b'{"prompt": "a"}\n' * 1000)[:60])
    with pytest.raises(InputError, match=r"cut.jsonl.gz: not a readable gzip file"):
        list(iter_rows(cut))
    fake = tmp_path / "fake.json.gz"
    fake.write_text('[{"prompt": "a"}]')
    with pytest.raises(InputError, match=r"fake.json.gz: not a readable gzip file"):
        list(iter_rows(fake))


@pytest.mark.parametrize("key", ["data", "rows"])
@pytest.mark.parametrize("indent", [None, 2])
def test_json_object_holding_the_rows_under_data_or_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        key: str, indent: int | None) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"version": 1, key: ROWS}, indent=indent))
    caplog.set_level(logging.INFO, logger="synthcodec")
    assert [row for _, row in iter_rows(src)] == ROWS
    assert f'reading the rows listed under "{key}"' in caplog.text  # a log record, not a print
    assert capsys.readouterr().err == ""


def test_json_object_without_a_row_list_names_what_is_expected(tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"train": ROWS, "test": ROWS}, indent=2))
    with pytest.raises(InputError, match=r'in.json: one JSON object, not a list of rows: '
                       r'expected a JSON array .* under "data" or "rows" \(this one has '
                       r'lists under: train, test\)'):
        list(iter_rows(src))


def test_json_lines_in_a_json_file_still_stream(tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text("\n" + "".join(json.dumps(r) + "\n" for r in ROWS))
    assert [line for line, _ in iter_rows(src)] == [2, 3]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(ROWS[0]))
    assert [row for _, row in iter_rows(one)] == ROWS[:1]


def test_malformed_json_array_names_the_line(tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text('[\n{"prompt": "a"},\n{"prompt": "b"}\n{"prompt": "c"}\n]')
    with pytest.raises(InputError, match=r"in.json:4: malformed JSON: Expecting ','"):
        list(iter_rows(src))
    src.write_text('[\n{"prompt": "a"},\n]')
    with pytest.raises(InputError, match=r"in.json:3: malformed JSON"):
        list(iter_rows(src))


def test_saved_dataset_dict_names_its_splits(tmp_path: Path) -> None:
    folder = tmp_path / "dd"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
        (folder / split / "state.json").write_text(json.dumps({"_data_files": []}))
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(InputError, match=r"a saved DatasetDict \(splits: train, test\): give one "
                       r"split's folder, e\.g\. .*dd/train"):
        list(iter_rows(folder))
