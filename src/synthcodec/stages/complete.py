"""complete: answer each row's prompt with a model, as free text or as validated JSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthcodec.engine import Record
from synthcodec.io import FieldSpec
from synthcodec.llm import Request
from synthcodec.runner import Models, RunOptions, Summary, run_file_stage


def complete_file(input_path: str | Path, run_dir: str | Path, *, model: str,
                  options: RunOptions, mapping: Mapping[str, str] | None = None,
                  system: str | None = None, temperature: float = 0.0, max_tokens: int = 512,
                  allow_truncated: bool = True, output_field: str = "response",
                  json_schema: dict[str, Any] | None = None, json_mode: bool = False,
                  json_reasks: int = 2, backends: Mapping[str, Any] | None = None) -> Summary:
    """Answer the `prompt` field of every row of `input_path` into `run_dir` (resuming it).

    Free text by default: an answer cut off at `max_tokens` is kept and marked `truncated`
    (`allow_truncated=False` fails it). With `json_mode` or a `json_schema`, the reply must be
    a JSON object (valid against the schema), re-asked `json_reasks` times, and the row gets
    the parsed object; a cut-off reply then always fails.
    """
    json_reply = None
    if json_mode or json_schema is not None:
        from synthcodec.json_output import ANY_OBJECT, JsonReply

        json_reply = JsonReply(json_schema if json_schema is not None else ANY_OBJECT,
                               max_tokens, repeats=temperature == 0 or not options.no_cache)

    def make_step(models: Models) -> Any:
        client = models["model"]

        async def step(record: Record) -> Record:
            request = Request.chat(record["prompt"], system=system, temperature=temperature,
                                   max_tokens=max_tokens,
                                   json_schema=json_reply.schema if json_reply else None)
            if json_reply is not None:
                asked = await client.ask(request, json_reply.parse, reasks=json_reasks,
                                         correction=json_reply.correction,
                                         failure="no valid JSON")
                return {output_field: asked.value, "truncated": False}
            completion = await client.complete(request, allow_truncated=allow_truncated)
            return {output_field: completion.text,
                    "truncated": completion.finish_reason == "length"}

        return step

    return run_file_stage(
        input_path=input_path, run_dir=run_dir, stage="complete",
        fields=[FieldSpec("prompt")], mapping=dict(mapping or {}), models={"model": model},
        make_step=make_step, options=options, adds=(output_field, "truncated"),
        adds_hint="name the answer column with --output-field", backends=backends,
        config={"system": system, "temperature": temperature, "max_tokens": max_tokens,
                "output_field": output_field, "allow_truncated": allow_truncated,
                # only when used, so run dirs made before these options still resume
                **({"json_schema": json_reply.schema, "json_reasks": json_reasks}
                   if json_reply else {})},
    )
