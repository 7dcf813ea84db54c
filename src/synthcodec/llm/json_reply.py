"""Schema-checked JSON replies for `complete --json` / `--json-schema FILE`: load the schema,
check every reply.

The schema goes to the backend in its native form (`Request.json_schema`: OpenAI
`response_format` json_schema, a llama.cpp grammar); every reply is still parsed and
validated here, because servers differ in whether they enforce it. Validation uses
`jsonschema`, the reference implementation, so any schema a user writes (any draft, `$ref`,
`oneOf`, `patternProperties`, ...) means exactly what it says; a pydantic model built from a
schema would drop what it cannot express. Invalid replies are re-asked through
`LLMClient.ask` (the one re-ask loop); a reply cut off at max_tokens fails the record at once,
since the same request would be cut off again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.judging.fence import strip_code_fence
from synthcodec.llm.base import Completion
from synthcodec.llm.client import clip, fail_if_truncated

# `--json` without a schema: any JSON object.
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def load_schema(path: str | Path) -> dict[str, Any]:
    """Read and check a JSON Schema file; a UserError (one line, exit 2) says what is wrong."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    where = f"--json-schema {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot read the file ({type(exc).__name__}: {exc})") from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        if hasattr(exc, "lineno"):
            detail = f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        else:
            detail = str(exc)
        raise UserError(f"{where}: not valid JSON ({detail})") from None
    if not isinstance(schema, dict):
        raise UserError(
            f"{where}: a JSON Schema must be a JSON object, got {type(schema).__name__}")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise UserError(
            f"{where}: not a valid JSON Schema at {at}: {clip(exc.message, 160)}") from None
    return schema


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is too large for a number")
    return value


class JsonReply:
    """Parses and validates one reply: `parse` for `LLMClient.ask`, and its `correction`."""

    def __init__(self, schema: dict[str, Any], max_tokens: int) -> None:
        from jsonschema.validators import validator_for

        self.schema = schema
        self.max_tokens = max_tokens
        self._validator = validator_for(schema)(schema)

    def parse(self, completion: Completion) -> Any:
        fail_if_truncated(completion, self.max_tokens)
        text = strip_code_fence(completion.text)
        try:
            value = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {getattr(exc, 'msg', exc)}") from None
        from jsonschema.exceptions import best_match

        error = best_match(self._validator.iter_errors(value))
        if error is not None:
            at = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            raise ValueError(f"does not match the schema at {at}: {clip(error.message, 120)}")
        return value

    def correction(self, problem: str) -> str:
        return (f"That reply was not valid ({problem}). Reply again with only a JSON "
                + ("object." if self.schema == ANY_OBJECT else "value that matches the schema."))
