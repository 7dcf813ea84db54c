"""complete: answer each row's prompt with a model, as free text or as validated JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from synthcodec.driver import Summary, run_file_stage
from synthcodec.io import FieldSpec
from synthcodec.llm import Request
from synthcodec.records import Record
from synthcodec.session import Models, RunOptions
from synthcodec.settings import setting
from synthcodec.stages.base import ModelStage, reasoning_fields


@dataclass
class CompleteStage(ModelStage):
    """Answer a prompt: free text, or a JSON object (validated against a schema)."""

    # Each setting is its `complete` option, recipe key and API keyword (synthcodec.settings).
    model: str = setting("local", "--model", "-m", type=str, help="The model (see below).")
    system: str | None = setting(None, "--system", type=str,
                                 help="A system message sent with every prompt.")
    temperature: float = setting(0.0, "--temperature", type=float)
    max_tokens: int = setting(512, "--max-tokens", type=click.IntRange(1))
    allow_truncated: bool = setting(
        True, "--allow-truncated/--fail-truncated",
        help="Keep an answer cut off at --max-tokens, marked truncated: true (default), or "
             "count it as failed.")
    output_field: str = setting("response", "--output-field", type=str,
                                help="Name of the answer field added to each row.")
    json_schema: dict[str, Any] | None = None  # from --json / --json-schema FILE
    reasks: int = setting(  # re-asks of a reply that is not valid JSON
        2, "--json-reasks", type=click.IntRange(0, 10),
        help="With --json/--json-schema: re-ask an invalid reply this many times, then put "
             "the row in failed.jsonl with the reason.")
    keep_reasoning: bool = setting(  # the model's reasoning trace as its own column
        False, "--keep-reasoning",
        help="Keep a reasoning model's trace (<think>...</think>, reasoning_content) as a "
             "`reasoning` column, for building reasoning data. Default: it is kept out of the "
             "answer, in `_synthcodec.reasoning`.")
    name: str = "complete"

    def __post_init__(self) -> None:
        self.roles = {"model": self.model}

    def config(self) -> dict[str, Any]:
        return {"system": self.system, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "output_field": self.output_field,
                "allow_truncated": self.allow_truncated,
                # only when used, so run dirs made before these options still resume (the
                # key keeps the name runs were written with)
                **({"json_schema": self.json_schema, "json_reasks": self.reasks}
                   if self.json_schema is not None else {}),
                **({"keep_reasoning": True} if self.keep_reasoning else {})}

    async def setup(self, models: Models) -> None:
        self._client = models["model"]
        self._reply: Any = None
        if self.json_schema is not None:
            from synthcodec.llm.json_reply import JsonReply

            self._reply = JsonReply(self.json_schema, self.max_tokens)

    async def run(self, record: Record) -> Record:
        request = Request.chat(record["prompt"], system=self.system,
                               temperature=self.temperature, max_tokens=self.max_tokens,
                               json_schema=self.json_schema)
        if self._reply is not None:
            asked = await self._client.ask(request, self._reply.parse, reasks=self.reasks,
                                           correction=self._reply.correction,
                                           failure="no valid JSON")
            return {self.output_field: asked.value, "truncated": False,
                    **reasoning_fields(asked.completion.reasoning, self.keep_reasoning)}
        completion = await self._client.complete(request, allow_truncated=self.allow_truncated)
        return {self.output_field: completion.text,
                "truncated": completion.finish_reason == "length",
                **reasoning_fields(completion.reasoning, self.keep_reasoning)}


def complete_file(input_path: str | Path, run_dir: str | Path, *, model: str,
                  options: RunOptions, mapping: Mapping[str, str] | None = None,
                  system: str | None = None, temperature: float = 0.0, max_tokens: int = 512,
                  allow_truncated: bool = True, output_field: str = "response",
                  json_schema: dict[str, Any] | None = None, json: bool = False,
                  reasks: int = 2, keep_reasoning: bool = False,
                  backends: Mapping[str, Any] | None = None) -> Summary:
    """Answer the `prompt` field of every row of `input_path` into `run_dir` (resuming it).

    Free text by default: an answer cut off at `max_tokens` is kept and marked `truncated`
    (`allow_truncated=False` fails it). With `json` or a `json_schema`, the reply must be a
    JSON object (valid against the schema), re-asked `reasks` times, and the row gets
    the parsed object; a cut-off reply then always fails. A reasoning model's trace goes to
    the row's lineage (`_synthcodec.reasoning`), or with `keep_reasoning` to a `reasoning`
    column.
    """
    if json and json_schema is None:
        from synthcodec.llm.json_reply import ANY_OBJECT

        json_schema = ANY_OBJECT
    stage = CompleteStage(model=model, system=system, temperature=temperature,
                          max_tokens=max_tokens, allow_truncated=allow_truncated,
                          output_field=output_field, json_schema=json_schema,
                          reasks=reasks, keep_reasoning=keep_reasoning)
    return run_file_stage(
        input_path=input_path, run_dir=run_dir, stage=stage,
        fields=[FieldSpec("prompt")], mapping=dict(mapping or {}), options=options,
        adds=(output_field, "truncated", *(("reasoning",) if keep_reasoning else ())),
        adds_hint="name the answer column with --output-field",
        backends=backends)
