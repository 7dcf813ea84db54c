"""Reading records from JSONL, JSON arrays, CSV, Parquet and saved HF datasets; writing JSONL/Parquet.

Every reader yields (line, row) so errors can name the place. `scan_input` reads the whole
input once before any work starts: bad input stops the run before anything is written.
JSON, JSONL and CSV may be gzipped (`.jsonl.gz`). Every row is checked as it is read
(`check_row`): a repeated key or column, NaN/Infinity, a lone surrogate or nesting deeper
than MAX_DEPTH is refused, naming the place, since each would be lost or break a later
step (a row must be writable as strict JSON and as UTF-8).

One module although over 500 lines: the readers, the strict row checks they all apply and
the field mapping (`FieldSpec`, `extract`, `scan_input`) are together what "a valid input"
means, and an error from any of them names the same place (file, line, field).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import gzip
import itertools
import json
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from synthcodec.errors import InputError, UserError
from synthcodec.records import META

log = logging.getLogger(__name__)

Row = dict[str, Any]

# Levels of nesting a row may have. Far more than any dataset needs, and far enough below
# Python's recursion limit that every later step (hashing, JSON writing) can walk the row.
MAX_DEPTH = 100
# A .json file holding one object with the rows in a list under one of these keys.
WRAPPER_KEYS = ("data", "rows")


def parse_field_map(items: Iterable[str]) -> dict[str, str]:
    """`['prompt=text']` -> `{'prompt': 'text'}`: our field name = the input's column."""
    mapping: dict[str, str] = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise UserError(f"--field expects OURS=THEIRS (e.g. prompt=text), got {item!r}")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def _suffix(path: Path) -> tuple[str, bool]:
    """(the format's suffix, gzipped?): `in.jsonl.gz` -> ('.jsonl', True)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return Path(name[:-3]).suffix, True
    return path.suffix.lower(), False


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _suffix(path)[1] else open(path, "rb")  # noqa: SIM115


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "hf"
        if (path / "dataset_dict.json").exists():
            splits = _dataset_dict_splits(path)
            example = path / (splits[0] if splits else "train")
            raise InputError(path, "a saved DatasetDict (splits: " + (", ".join(splits) or "none")
                             + f"): give one split's folder, e.g. {example}")
        raise InputError(path, "a directory, but not a Hugging Face dataset saved with save_to_disk")
    suffix, gzipped = _suffix(path)
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        try:
            with _open_bytes(path) as fh:
                head = fh.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise InputError(path, f"not a readable gzip file ({exc})") from None
        return "json" if head.startswith(b"[") else "json_object_or_lines"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq") and not gzipped:
        return "parquet"
    raise InputError(path, f"unknown file type '{suffix}{'.gz' if gzipped else ''}' (use .jsonl, "
                     ".json, .csv (each may be gzipped: .jsonl.gz), .parquet or a saved Hugging "
                     "Face dataset directory)")


def _dataset_dict_splits(path: Path) -> list[str]:
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        return [str(s) for s in splits]
    except (OSError, ValueError, KeyError, TypeError):
        return sorted(p.name for p in path.iterdir() if (p / "state.json").exists())


def iter_rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, Row]]:
    """(line or row number, row) for every row; raises InputError with the location."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or directory")
    fmt = detect_format(p)
    reader = {"jsonl": _jsonl, "json": _json_array, "json_object_or_lines": _json_object_or_lines,
              "csv": _csv, "parquet": _parquet, "hf": _hf}[fmt]
    return _checked(p, reader(p))


def _checked(path: Path, rows: Iterator[tuple[int, Row]]) -> Iterator[tuple[int, Row]]:
    """The reader's rows, each checked by `check_row`; a truncated gzip file is bad input."""
    try:
        for line, row in rows:
            check_row(path, line, row)
            yield line, row
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(path, f"not a readable gzip file ({exc})") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats (json.loads would keep the last silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def loads_strict(path: Path, text: str, line: int | None = None) -> Any:
    """`json.loads`, with every way a JSON text can be bad named as InputError."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON: {exc.msg} at column {exc.colno}",
                         line=exc.lineno if line is None else line) from None
    except (_DuplicateKey, RecursionError) as exc:
        raise _unfit_object(path, exc, line) from None


def _unfit_object(path: Path, exc: _DuplicateKey | RecursionError, line: int | None) -> InputError:
    """The InputError for a JSON text `_DECODER` refused although it is well-formed."""
    if isinstance(exc, _DuplicateKey):
        return InputError(path, "this key appears twice in one object (JSON readers keep only "
                          "the last value): rename or drop one", line=line, field=exc.key)
    return InputError(path, f"nested deeper than {MAX_DEPTH} levels", line=line)


def check_row(path: str | os.PathLike[str], line: int, row: Row) -> None:
    """Refuse values a row cannot carry: NaN/Infinity (not JSON), a lone surrogate (not
    UTF-8: "\\ud800" with no pair), nesting deeper than MAX_DEPTH. InputError names the
    field (dotted for nested values, e.g. `meta.scores[2]`; the top-level one for depth)."""
    found = _first_unfit(row, 0)
    if found is None:
        return
    problem, keys = found  # keys innermost first
    keys.reverse()
    if problem == "deep":
        raise InputError(path, f"nested deeper than {MAX_DEPTH} levels", line=line,
                         field=str(keys[0]) if keys else None)
    where = str(keys[0]) + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys[1:])
    if problem == "key":
        shown = where.encode("utf-8", "backslashreplace").decode("utf-8")
        raise InputError(path, "this key holds a lone surrogate (an unpaired \\ud800-\\udfff "
                         "escape), which is not valid Unicode text", line=line, field=shown)
    if problem == "text":
        raise InputError(path, "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), "
                         "which is not valid Unicode text", line=line, field=where)
    raise InputError(path, f"{problem} is not a JSON number: use null or a number", line=line,
                     field=where)


def _first_unfit(value: dict[Any, Any] | list[Any], depth: int) -> tuple[str, list[Any]] | None:
    """The first thing in `value` a row cannot carry: ("deep" | "key" | "text" | "NaN" |
    "Infinity" | "-Infinity", the keys and indexes leading to it, innermost first), else None.
    The path is built only on the way back from a find, so a fine row costs one walk."""
    if depth >= MAX_DEPTH:
        return "deep", []
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        if isinstance(key, str) and not key.isascii() and not is_utf8(key):
            return "key", [key]
        if isinstance(item, str):
            if not item.isascii() and not is_utf8(item):
                return "text", [key]
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity", [key]
        elif isinstance(item, (dict, list)):
            found = _first_unfit(item, depth + 1)
            if found is not None:
                found[1].append(key)
                return found
    return None


def is_utf8(text: str) -> bool:
    """Can `text` be written as UTF-8? (Not when it holds a lone surrogate, "\\ud800".)"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decode(path: Path, line: int, raw: bytes) -> str:
    try:
        # utf-8-sig: files saved by Excel or Notepad start with a byte-order mark.
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8",
                         line=line) from None


def _jsonl(path: Path) -> Iterator[tuple[int, Row]]:
    with _open_bytes(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            text = _decode(path, line_no, raw).strip()
            if not text:
                continue
            row = loads_strict(path, text, line_no)
            if not isinstance(row, dict):
                raise InputError(path, f"expected a JSON object, got {type(row).__name__}",
                                 line=line_no)
            yield line_no, row


def _json_array(path: Path) -> Iterator[tuple[int, Row]]:
    """A JSON array of objects, decoded an item at a time so that an error names the item."""
    with _open_bytes(path) as fh:
        text = _decode(path, 1, fh.read())  # line 1: a byte-order mark is accepted
    pos = _skip_space(text, text.index("[") + 1)
    i = 0
    while pos < len(text) and text[pos] != "]":
        i += 1
        if i > 1:
            if text[pos] != ",":
                raise InputError(path, f"malformed JSON: Expecting ',' delimiter at column "
                                 f"{pos - text.rfind(chr(10), 0, pos)}", line=_line_at(text, pos))
            pos = _skip_space(text, pos + 1)
        try:
            row, pos = _DECODER.raw_decode(text, pos)  # also refuses a trailing comma
        except json.JSONDecodeError as exc:
            raise InputError(path, f"malformed JSON: {exc.msg} at column {exc.colno}",
                             line=exc.lineno) from None
        except (_DuplicateKey, RecursionError) as exc:
            raise _unfit_object(path, exc, i) from None
        if not isinstance(row, dict):
            raise InputError(path, f"item {i} is a {type(row).__name__}, not an object", line=i)
        yield i, row
        pos = _skip_space(text, pos)
    if pos >= len(text):
        raise InputError(path, "malformed JSON: the array is not closed with ']'",
                         line=_line_at(text, pos))
    if text[pos + 1:].strip():
        raise InputError(path, "malformed JSON: Extra data after the array",
                         line=_line_at(text, _skip_space(text, pos + 1)))


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


_announced: set[str] = set()


def _json_object_or_lines(path: Path) -> Iterator[tuple[int, Row]]:
    """A .json file that does not start with `[`: JSON Lines (one object per line), or one
    object holding the rows as a list under "data" or "rows" ({"data": [...]}). JSON Lines
    stream as usual; only a file whose first line is not a whole object (a pretty-printed
    object), or that has one line, is read as one document."""
    with _open_bytes(path) as fh:
        first = b""
        for first in fh:
            if first.strip():
                break
        one_line = not any(line.strip() for line in fh)
    if not first.strip():
        return  # no rows
    complete = True  # is the first line a whole JSON value?
    head = None
    try:
        head = _DECODER.decode(_decode(path, 1, first))
    except (_DuplicateKey, RecursionError):
        pass  # a whole object, with a problem the reader names below
    except ValueError:
        complete = False
    if complete and not one_line:
        yield from _jsonl(path)
        return
    if head is None:
        with _open_bytes(path) as fh:
            head = loads_strict(path, _decode(path, 1, fh.read()), 1 if one_line else None)
    key = next((k for k in WRAPPER_KEYS if isinstance(head, dict)
                and isinstance(head.get(k), list)), None)
    if key is not None:
        if str(path) not in _announced:
            _announced.add(str(path))
            log.info(f"{path}: reading the rows listed under \"{key}\"")
        yield from _items(path, head[key])
    elif one_line:
        yield from _jsonl(path)  # one row on one line
    else:
        lists = [k for k, v in head.items() if isinstance(v, list)] \
            if isinstance(head, dict) else []
        raise InputError(path, "one JSON object, not a list of rows: expected a JSON array of "
                         "objects, JSON Lines (one object per line), or an object with the "
                         "rows under " + " or ".join(f'"{k}"' for k in WRAPPER_KEYS)
                         + (f" (this one has lists under: {', '.join(lists)})" if lists else ""))


def _items(path: Path, rows: list[Any]) -> Iterator[tuple[int, Row]]:
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InputError(path, f"item {i} is a {type(row).__name__}, not an object", line=i)
        yield i, row


def _csv(path: Path) -> Iterator[tuple[int, Row]]:
    delimiter = "\t" if _suffix(path)[0] == ".tsv" else ","
    try:
        with _open_text(path) as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            _check_unique(path, reader.fieldnames or [], what="column", line=1)
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


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig: files saved by Excel or Notepad start with a byte-order mark.
    if _suffix(path)[1]:
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115


def _check_unique(path: Path, names: Sequence[str], *, what: str, line: int | None = None) -> None:
    """A repeated column name would silently drop one column's values: refuse it."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            if not name.strip():
                raise InputError(path, f"two {what}s have no name (only one of the two could "
                                 "be read): name them or drop them", line=line)
            raise InputError(path, f"this {what} name appears twice (only one of the two could "
                             "be read): rename or drop one", line=line, field=name)
        seen.add(name)


def _parquet(path: Path) -> Iterator[tuple[int, Row]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(path, f"not a readable Parquet file: {exc}") from None
    _check_unique(path, parquet.schema_arrow.names, what="column")
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
            _check_unique(f, reader.schema.names, what="column")
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
