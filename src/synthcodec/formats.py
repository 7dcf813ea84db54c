"""Example formats: rows -> `Example`s (chat messages) -> Alpaca / OpenAI / ShareGPT records.

One example type for everything that learns from or writes out examples: `Example` is a
conversation (`messages`); one made from an instruction, an optional input and a response
(`Example.of`) keeps the instruction and input apart too, since Alpaca writes them apart. The
user turn joins them with `join_instruction`, the one prompt layout for training, export,
benchmark questions and judged questions, so a tuned model is asked exactly what it learned.

Reading: `example_from_row` takes a training row in any of the three shapes (errors name the
file, line and field); `examples_from_rows` takes rows with our field names (`--field` maps
them). Writing: Alpaca JSON, OpenAI chat-messages JSONL, ShareGPT JSON and a Hugging Face
dataset saved with `save_to_disk` (needs the optional `hf` extra), plus plain JSONL of whole
rows; every writer streams its input and publishes atomically: a reader never sees half a
file. The record builders (`alpaca_record`, `openai_record`, `sharegpt_record`) are pure, so
`push` reuses them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import InputError, MissingExtraError, UserError
from synthcodec.io import FieldSpec, extract
from synthcodec.store import atomic_writer, dumps, write_jsonl

__all__ = [
    "EXAMPLE_FIELDS",
    "FORMATS",
    "Example",
    "Message",
    "alpaca_record",
    "example_from_row",
    "examples_from_rows",
    "export",
    "join_instruction",
    "openai_record",
    "require_extra",
    "sharegpt_record",
    "write_alpaca",
    "write_hf",
    "write_jsonl",
    "write_openai",
    "write_sharegpt",
]

FORMATS = ("jsonl", "alpaca", "openai", "sharegpt", "hf")

# Our names for the three parts of an example; `--field response=output` maps them to columns.
EXAMPLE_FIELDS = [FieldSpec("instruction"), FieldSpec("input", required=False), FieldSpec("response")]


Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": text}
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant"}
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def join_instruction(instruction: str, input_text: str | None = "") -> str:
    """The instruction, then a blank line and the input when there is one (Alpaca's layout).

    An input that is empty or only whitespace adds nothing; the texts are otherwise kept as
    written (no stripping), as training has always rendered them.
    """
    if input_text and input_text.strip():
        return f"{instruction}\n\n{input_text}"
    return instruction


@dataclass(frozen=True)
class Example:
    """One example to learn from: a conversation whose assistant turns are what is learned.

    `instruction` and `input` are set when it was made from them (`Example.of`): Alpaca
    writes them apart, while the user turn in `messages` joins them. `line` is where it was
    read (1-based; 0 when made in code).
    """

    messages: tuple[Message, ...]
    line: int = 0
    instruction: str | None = None
    input: str = ""

    @classmethod
    def of(cls, instruction: str, output: str, input: str = "", *, system: str = "",
           line: int = 0) -> Example:
        """An instruction (+ input) -> response example; `input` is "" when there is none."""
        messages: list[Message] = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": join_instruction(instruction, input)},
                     {"role": "assistant", "content": output}]
        return cls(tuple(messages), line, instruction, input)

    @property
    def output(self) -> str:
        """The last assistant turn: the response."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "assistant")


def alpaca_record(example: Example) -> dict[str, str]:
    if example.instruction is None:
        raise ValueError("an example read as a conversation has no Alpaca form")
    return {"instruction": example.instruction, "input": example.input, "output": example.output}


def openai_record(example: Example, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [dict(m) for m in example.messages]}


def sharegpt_record(example: Example, system: str | None = None) -> dict[str, Any]:
    turns = [{"from": "system", "value": system}] if system else []
    turns += [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]}
              for m in example.messages]
    return {"conversations": turns}


def example_from_row(path: str | os.PathLike[str], line: int, row: Mapping[str, Any]) -> Example:
    """A training row as an example: Alpaca (`instruction`, `input`, `output`/`response`,
    optional `system`), OpenAI `messages`, or ShareGPT `conversations`. Raises InputError
    naming the file, line and field."""
    if "messages" in row:
        return Example(_chat_messages(path, line, row["messages"], "messages"), line)
    if "conversations" in row:
        return Example(_chat_messages(path, line, row["conversations"], "conversations"), line)
    instruction = _text_field(path, line, row, "instruction")
    out_field = "output" if "output" in row or "response" not in row else "response"
    output = _text_field(path, line, row, out_field)
    input_text = row.get("input")
    if input_text is None:
        input_text = ""
    if not isinstance(input_text, str):
        raise InputError(path, f"expected a string, got {type(input_text).__name__}",
                         line=line, field="input")
    system = row.get("system")
    return Example.of(instruction, output, input_text, line=line,
                      system=system if isinstance(system, str) and system.strip() else "")


def _text_field(path: Any, line: int, row: Mapping[str, Any], name: str) -> str:
    if name not in row or row[name] is None:
        hint = ("; each row needs 'instruction' and 'output' (Alpaca), or 'messages' "
                "(OpenAI chat format)")
        raise InputError(path, "missing" + hint, line=line, field=name)
    value = row[name]
    if not isinstance(value, str):
        raise InputError(path, f"expected a string, got {type(value).__name__}",
                         line=line, field=name)
    if not value.strip():
        raise InputError(path, "empty", line=line, field=name)
    return value


def _chat_messages(path: Any, line: int, value: Any, name: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(path, "expected a non-empty list of messages", line=line, field=name)
    messages: list[Message] = []
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise InputError(path, f"expected an object, got {type(m).__name__}",
                             line=line, field=where)
        if "role" in m or "content" in m:
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                raise InputError(path, f"role must be one of {', '.join(ROLES)}, got {role!r}",
                                 line=line, field=f"{where}.role")
        else:  # ShareGPT: {"from": "human"|"gpt"|"system", "value": ...}
            role, content = SHAREGPT_ROLES.get(str(m.get("from"))), m.get("value")
            if role is None:
                raise InputError(path, "expected 'role'/'content' (OpenAI) or 'from'/'value' "
                                 "(ShareGPT)", line=line, field=where)
        if not isinstance(content, str):
            raise InputError(path, "content must be a string", line=line,
                             field=f"{where}.content")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise InputError(path, "no assistant message to learn from", line=line, field=name)
    return tuple(messages)


def examples_from_rows(rows: Iterable[tuple[int, Mapping[str, Any]]], mapping: Mapping[str, str],
                       source: str | os.PathLike[str]) -> Iterator[Example]:
    """Examples from (line, row) pairs; a missing or non-text field is an InputError naming the line."""
    for line, row in rows:
        fields = extract(source, line, row, EXAMPLE_FIELDS, mapping)
        yield Example.of(fields["instruction"], fields["response"], fields.get("input") or "",
                         line=line)


def _write_json_array(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """A JSON array written one element at a time, so memory stays flat for big exports."""
    n = 0
    with atomic_writer(path) as fh:
        fh.write("[")
        for row in rows:
            fh.write(",\n  " if n else "\n  ")
            fh.write(dumps(row))
            n += 1
        fh.write("\n]\n" if n else "]\n")
    return n


def write_alpaca(path: str | os.PathLike[str], examples: Iterable[Example]) -> int:
    return _write_json_array(path, (alpaca_record(e) for e in examples))


def write_openai(path: str | os.PathLike[str], examples: Iterable[Example],
                 system: str | None = None) -> int:
    return write_jsonl(path, (openai_record(e, system) for e in examples))


def write_sharegpt(path: str | os.PathLike[str], examples: Iterable[Example],
                   system: str | None = None) -> int:
    return _write_json_array(path, (sharegpt_record(e, system) for e in examples))


def require_extra(fmt: str) -> None:
    """Fail before any work starts when `fmt` needs a package that is not installed."""
    if fmt == "hf":
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise MissingExtraError("datasets", "hf", "--format hf") from None


def write_hf(path: str | os.PathLike[str], examples: Iterable[Example]) -> int:
    """A `datasets.Dataset` with instruction/input/output columns, saved with `save_to_disk`.

    It is saved into a temporary folder beside `path` and then renamed into place, so an
    interrupted export never leaves a half-written dataset where a reader expects one.
    """
    require_extra("hf")
    import datasets

    columns: dict[str, list[str]] = {"instruction": [], "input": [], "output": []}
    for e in examples:
        for key, value in alpaca_record(e).items():
            columns[key].append(value)
    features = datasets.Features({k: datasets.Value("string") for k in columns})
    dataset = datasets.Dataset.from_dict(columns, features=features)
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a directory (--format hf writes a folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old: Path | None = None
    try:
        dataset.save_to_disk(str(tmp))
        if target.exists():  # rename() cannot replace a non-empty folder: move the old one aside
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return len(columns["output"])


def export(fmt: str, path: str | os.PathLike[str], rows: Iterable[tuple[int, Mapping[str, Any]]],
           mapping: Mapping[str, str], source: str | os.PathLike[str] = "<rows>") -> int:
    """Write (line, row) pairs in `fmt`: whole rows for jsonl, examples for the others."""
    if fmt == "jsonl":
        return write_jsonl(path, (row for _, row in rows))
    examples = examples_from_rows(rows, mapping, source)
    if fmt == "alpaca":
        return write_alpaca(path, examples)
    if fmt == "openai":
        return write_openai(path, examples)
    if fmt == "sharegpt":
        return write_sharegpt(path, examples)
    if fmt == "hf":
        return write_hf(path, examples)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
