"""Benchmark question files: the four published formats, detected from their fields, plus a
field mapping for anything else.

| format        | fields as published                                   |
|---------------|-------------------------------------------------------|
| vicuna        | `{question_id, text, category}`                       |
| self-instruct | `{id, instruction, instances: [{input, ...}], ...}`   |
| wizardlm      | `{idx, Instruction, Skill?, ...}` (Evol-Instruct test)|
| koala         | `{id, prompt}`                                        |

Every reader yields `Question(id, text, category)`; errors name file, line and field (via
`synthcodec.io`), and the whole file is read before any model is called.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from synthcodec.errors import InputError, UserError
from synthcodec.formats import join_instruction
from synthcodec.io import iter_rows

__all__ = [
    "BENCH_FORMATS",
    "BenchFormat",
    "Question",
    "detect_bench",
    "read_questions",
    "resolve_format",
]

# The fields a user may map with --field OURS=THEIRS.
MAPPABLE = ("id", "text", "input", "category", "instances")


@dataclass(frozen=True)
class Question:
    """One benchmark question: its id as published (int or str), the full text, a category."""

    id: Any
    text: str
    category: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"question_id": self.id, "question": self.text, "category": self.category}


@dataclass(frozen=True)
class BenchFormat:
    """Where a format keeps each of our fields; None = the format has no such field."""

    name: str
    id: str | None
    text: str
    category: str | None = None
    input: str | None = None  # a flat input column joined to the text (Alpaca-style rows)
    instances: str | None = None  # a list of {input} objects: one question per instance

    def with_mapping(self, mapping: Mapping[str, str]) -> "BenchFormat":
        """The same format with some fields pointed at other columns (the user's --field)."""
        unknown = sorted(set(mapping) - set(MAPPABLE))
        if unknown:
            raise UserError(f"--field: unknown field(s) {', '.join(unknown)}; "
                            f"a benchmark maps {', '.join(MAPPABLE)}")
        values = {k: getattr(self, k) for k in MAPPABLE}
        values.update(mapping)
        name = self.name if not mapping else f"{self.name}+fields"
        return BenchFormat(name=name, **values)

    def questions(self, path: str | os.PathLike[str], line: int,
                  row: Mapping[str, Any]) -> list[Question]:
        """The question(s) of one row; InputError names the file, line and field at fault."""
        text = _text(path, line, row, self.text)
        qid: Any = line if self.id is None else _required(path, line, row, self.id)
        if isinstance(qid, bool) or not isinstance(qid, (int, str)):
            raise InputError(path, f"expected a string or integer id, got {type(qid).__name__}",
                             line=line, field=self.id)
        category = None
        if self.category is not None and row.get(self.category) is not None:
            category = str(row[self.category])
        if self.input is not None and row.get(self.input) is not None:
            text = join_instruction(text, _text(path, line, row, self.input))
        if self.instances is None or row.get(self.instances) is None:
            return [Question(qid, text, category)]
        instances = row[self.instances]
        if not isinstance(instances, list) or not instances:
            raise InputError(path, "expected a non-empty list of {input} objects",
                             line=line, field=self.instances)
        out = []
        for k, instance in enumerate(instances):
            where = f"{self.instances}[{k}].input"
            if not isinstance(instance, Mapping):
                raise InputError(path, f"expected an object, got {type(instance).__name__}",
                                 line=line, field=f"{self.instances}[{k}]")
            value = instance.get("input", "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise InputError(path, f"expected str, got {type(value).__name__}",
                                 line=line, field=where)
            # One instance (the published user-oriented set) keeps the task's id as is;
            # several (e.g. the seed tasks) get one question each with a stable suffix.
            ident = qid if len(instances) == 1 else f"{qid}#{k}"
            out.append(Question(ident, join_instruction(text, value), category))
        return out


BENCH_FORMATS: dict[str, BenchFormat] = {
    "vicuna": BenchFormat("vicuna", id="question_id", text="text", category="category"),
    "self-instruct": BenchFormat("self-instruct", id="id", text="instruction",
                                 instances="instances"),
    "wizardlm": BenchFormat("wizardlm", id="idx", text="Instruction", category="Skill"),
    "koala": BenchFormat("koala", id="id", text="prompt"),
}
ALIASES = {"sinstruct": "self-instruct", "self_instruct": "self-instruct",
           "evol-instruct": "wizardlm", "evol_instruct": "wizardlm"}

# Fields that identify a format, checked most specific first (Koala's {id, prompt} would
# otherwise also match rows of other formats that happen to carry a prompt).
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("vicuna", frozenset({"question_id", "text"})),
    ("self-instruct", frozenset({"id", "instruction", "instances"})),
    ("wizardlm", frozenset({"idx", "Instruction"})),
    ("koala", frozenset({"id", "prompt"})),
)


def detect_bench(row: Mapping[str, Any]) -> str | None:
    """The format whose identifying fields this row has, else None."""
    for name, fields in _SIGNATURES:
        if fields <= row.keys():
            return name
    return None


def resolve_format(path: str | os.PathLike[str], bench: str | None,
                   mapping: Mapping[str, str]) -> BenchFormat:
    """The format named by --bench, else detected from the first row; --field overrides."""
    if bench is not None:
        key = ALIASES.get(bench.lower(), bench.lower())
        if key not in BENCH_FORMATS:
            raise UserError(f"unknown --bench {bench!r}; choose one of {', '.join(BENCH_FORMATS)} "
                            "(or map the fields with --field id=COL --field text=COL)")
        return BENCH_FORMATS[key].with_mapping(mapping)
    first = next(iter_rows(path), None)
    if first is None:
        raise InputError(path, "the benchmark has no rows")
    line, row = first
    name = detect_bench(row)
    if name is not None:
        return BENCH_FORMATS[name].with_mapping(mapping)
    if "text" in mapping:  # a custom file described entirely by --field
        return BenchFormat("custom", id=None, text="text").with_mapping(mapping)
    raise InputError(
        path,
        f"cannot tell the benchmark format from the fields {sorted(row)}; name it with "
        f"--bench ({', '.join(BENCH_FORMATS)}) or map the columns with --field text=COL "
        "[--field id=COL --field category=COL --field input=COL]",
        line=line,
    )


def read_questions(path: str | os.PathLike[str], fmt: BenchFormat) -> Iterator[Question]:
    """Every question of the file in order (rows with several instances give several)."""
    for line, row in iter_rows(path):
        yield from fmt.questions(path, line, row)


def _required(path: str | os.PathLike[str], line: int, row: Mapping[str, Any],
              field: str) -> Any:
    if field not in row or row[field] is None:
        raise InputError(path, "missing (map another column with --field)", line=line,
                         field=field)
    return row[field]


def _text(path: str | os.PathLike[str], line: int, row: Mapping[str, Any], field: str) -> str:
    value = _required(path, line, row, field)
    if not isinstance(value, str):
        raise InputError(path, f"expected str, got {type(value).__name__}", line=line, field=field)
    return value
