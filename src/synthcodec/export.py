"""Write instruction examples in the formats fine-tuning tools read.

Alpaca JSON, OpenAI chat-messages JSONL, ShareGPT JSON and a Hugging Face dataset saved
with `save_to_disk` (needs the optional `hf` extra), plus plain JSONL of whole rows.
Every writer streams its input and publishes atomically: a reader never sees half a file.
The record builders (`alpaca_record`, `openai_record`, `sharegpt_record`) are pure so
generation commands can reuse them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import MissingExtraError, UserError
from synthcodec.instruction import join_instruction
from synthcodec.io import FieldSpec, extract
from synthcodec.store import atomic_writer, dumps, write_jsonl

__all__ = [
    "EXAMPLE_FIELDS",
    "FORMATS",
    "Example",
    "alpaca_record",
    "examples_from_rows",
    "export",
    "openai_record",
    "prompt_text",
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


@dataclass(frozen=True)
class Example:
    """One instruction-tuning example; `input` is "" when there is none (Alpaca's convention)."""

    instruction: str
    output: str
    input: str = ""


def prompt_text(example: Example) -> str:
    """The user turn: the instruction, then the input after a blank line when there is one."""
    return join_instruction(example.instruction, example.input)


def alpaca_record(example: Example) -> dict[str, str]:
    return {"instruction": example.instruction, "input": example.input, "output": example.output}


def openai_record(example: Example, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": prompt_text(example)},
                 {"role": "assistant", "content": example.output}]
    return {"messages": messages}


def sharegpt_record(example: Example, system: str | None = None) -> dict[str, Any]:
    turns = [{"from": "system", "value": system}] if system else []
    turns += [{"from": "human", "value": prompt_text(example)},
              {"from": "gpt", "value": example.output}]
    return {"conversations": turns}


def examples_from_rows(rows: Iterable[tuple[int, Mapping[str, Any]]], mapping: Mapping[str, str],
                       source: str | os.PathLike[str]) -> Iterator[Example]:
    """Examples from (line, row) pairs; a missing or non-text field is an InputError naming the line."""
    for line, row in rows:
        fields = extract(source, line, row, EXAMPLE_FIELDS, mapping)
        yield Example(instruction=fields["instruction"], output=fields["response"],
                      input=fields.get("input") or "")


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
        columns["instruction"].append(e.instruction)
        columns["input"].append(e.input)
        columns["output"].append(e.output)
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
