"""Reading records from JSONL, JSON arrays, CSV, Parquet and saved HF datasets; writing JSONL/Parquet.

Every reader yields (line, row) so errors can name the place. `scan_input` reads the whole
input once before any work starts: bad input stops the run before anything is written.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import InputError, UserError

Row = dict[str, Any]

# Our bookkeeping inside a row (record id, input position, status, reason). One namespaced
# key, so it never overwrites a user's column; an input that has it is refused.
META = "_synthcodec"


def parse_field_map(items: Iterable[str]) -> dict[str, str]:
    """`['prompt=text']` -> `{'prompt': 'text'}`: our field name = the input's column."""
    mapping: dict[str, str] = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise UserError(f"--field expects OURS=THEIRS (e.g. prompt=text), got {item!r}")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "hf"
        raise InputError(path, "a directory, but not a Hugging Face dataset saved with save_to_disk")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        with open(path, "rb") as fh:
            head = fh.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
        return "json" if head.startswith(b"[") else "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputError(path, f"unknown file type '{suffix}' (use .jsonl, .json, .csv, .parquet "
                     "or a saved Hugging Face dataset directory)")


def iter_rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, Row]]:
    """(line or row number, row) for every row; raises InputError with the location."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or directory")
    fmt = detect_format(p)
    reader = {"jsonl": _jsonl, "json": _json_array, "csv": _csv, "parquet": _parquet, "hf": _hf}[fmt]
    return reader(p)


def _decode(path: Path, line: int, raw: bytes) -> str:
    try:
        # utf-8-sig: files saved by Excel or Notepad start with a byte-order mark.
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8",
                         line=line) from None


def _jsonl(path: Path) -> Iterator[tuple[int, Row]]:
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            text = _decode(path, line_no, raw).strip()
            if not text:
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"malformed JSON: {exc.msg} at column {exc.colno}",
                                 line=line_no) from None
            if not isinstance(row, dict):
                raise InputError(path, f"expected a JSON object, got {type(row).__name__}",
                                 line=line_no)
            yield line_no, row


def _json_array(path: Path) -> Iterator[tuple[int, Row]]:
    raw = path.read_bytes()
    text = _decode(path, 1, raw)  # line 1: a byte-order mark is accepted
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON: {exc.msg} at column {exc.colno}",
                         line=exc.lineno) from None
    if not isinstance(rows, list):
        raise InputError(path, "expected a JSON array of objects")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InputError(path, f"item {i} is a {type(row).__name__}, not an object", line=i)
        yield i, row


def _csv(path: Path) -> Iterator[tuple[int, Row]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            for row in reader:
                if None in row:  # more fields than the header names
                    extra = row[None]
                    raise InputError(path, f"{len(reader.fieldnames or [])} columns in the header "
                                     f"but {len(reader.fieldnames or []) + len(extra)} fields on "
                                     "this line (quote fields that contain the delimiter)",
                                     line=reader.line_num)
                yield reader.line_num, dict(row)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}") from None


def _parquet(path: Path) -> Iterator[tuple[int, Row]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(path, f"not a readable Parquet file: {exc}") from None
    n = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield n, json_safe(row)


def _hf(path: Path) -> Iterator[tuple[int, Row]]:
    """A `datasets.Dataset.save_to_disk` folder, read with pyarrow (no `datasets` needed)."""
    import pyarrow as pa

    state = path / "state.json"
    files = []
    if state.exists():
        files = [path / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    else:
        files = sorted(path.glob("*.arrow"))
    if not files:
        raise InputError(path, "no .arrow data files in this dataset directory "
                         "(for a DatasetDict, point at one split's folder)")
    n = 0
    for f in files:
        with pa.memory_map(str(f)) as source:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                for row in batch.to_pylist():
                    n += 1
                    yield n, json_safe(row)


def json_safe(value: Any) -> Any:
    """Arrow values as JSON values: timestamps/dates as ISO 8601, bytes as text or base64,
    decimals as strings (exact), durations as seconds. Rows are journaled as JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class FieldSpec:
    """A field a command needs: its name, whether it is required, and its expected type."""

    name: str
    required: bool = True
    kind: type | tuple[type, ...] = str


def extract(path: str | os.PathLike[str], line: int, row: Mapping[str, Any],
            fields: Iterable[FieldSpec], mapping: Mapping[str, str]) -> Row:
    """Our fields from one input row, checked; InputError names file, line and field."""
    out: Row = {}
    for spec in fields:
        column = mapping.get(spec.name, spec.name)
        if column not in row or row[column] is None:
            if spec.required:
                hint = "" if spec.name in mapping else f" (map another column with --field {spec.name}=COLUMN)"
                raise InputError(path, f"missing{hint}", line=line, field=column)
            continue
        value = row[column]
        if not isinstance(value, spec.kind):
            expected = spec.kind.__name__ if isinstance(spec.kind, type) else "/".join(
                k.__name__ for k in spec.kind)
            raise InputError(path, f"expected {expected}, got {type(value).__name__}",
                             line=line, field=column)
        out[spec.name] = value
    return out


@dataclass
class InputSummary:
    rows: int
    sha256: str


def check_mapping(mapping: Mapping[str, str], fields: Iterable[FieldSpec]) -> None:
    """Every `--field OURS=...` must name a field this command reads."""
    known = [spec.name for spec in fields]
    for ours in mapping:
        if ours not in known:
            raise UserError(f"--field {ours}={mapping[ours]}: unknown field; this command reads "
                            + ", ".join(known))


def check_columns(path: str | os.PathLike[str], line: int, row: Mapping[str, Any],
                  adds: Iterable[str], hint: str = "") -> None:
    """Refuse a row whose columns the output would overwrite (ours never replace the user's)."""
    for name in (META, *adds):
        if name in row:
            why = ("is reserved for synthcodec's bookkeeping" if name == META else
                   "would be overwritten by this command's output column of that name")
            raise InputError(path, f"the input already has this column, which {why}"
                             + (f"; {hint}" if hint and name != META else ""),
                             line=line, field=name)


def scan_input(path: str | os.PathLike[str], fields: Iterable[FieldSpec],
               mapping: Mapping[str, str], *, adds: Iterable[str] = (),
               adds_hint: str = "") -> InputSummary:
    """Validate every row and count them, before any work starts.

    `adds` are the columns the command adds to each row: an input that already has one is
    refused (naming the file, line and column), since the output would overwrite it.
    """
    from synthcodec.store import hash_file

    fields = list(fields)
    adds = tuple(adds)
    check_mapping(mapping, fields)
    n = 0
    for line, row in iter_rows(path):
        extract(path, line, row, fields, mapping)
        check_columns(path, line, row, adds, adds_hint)
        n += 1
    if n == 0:
        raise InputError(path, "the input has no rows")
    return InputSummary(rows=n, sha256=hash_file(path))


def write_parquet(path: str | os.PathLike[str],
                  rows: Callable[[], Iterable[Row]] | Iterable[Row],
                  batch_size: int = 10_000) -> int:
    """Write rows into a Parquet file atomically, a batch at a time; returns how many.

    `rows` is read twice: once to find the schema over every row, once to write (pass a
    function that gives the rows afresh to keep memory flat; other iterables are listed).
    A schema from the first batch, or the first row, alone would fail on a column that is
    null there and text later, and silently drop a key first seen in a later row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthcodec.store import atomic_writer

    if callable(rows):
        source = rows
    else:
        listed = rows if isinstance(rows, Sequence) else list(rows)
        source = lambda: listed  # noqa: E731

    def batches() -> Iterator[list[Row]]:
        it = iter(source())
        while batch := list(itertools.islice(it, batch_size)):
            yield batch

    try:
        # pa.array over the dicts sees every key of every row (Table.from_pylist takes
        # the first row's keys and drops a column that starts later).
        schemas = [pa.schema(list(pa.array(batch).type)) for batch in batches()]
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas \
            else pa.schema([])
    except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:  # e.g. numbers in one row, text in another
        raise UserError(f"cannot write {path} as Parquet: a column holds values of two "
                        f"types ({exc}); use the JSONL output") from None
    n = 0
    with atomic_writer(path, "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
        for batch in batches():
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
