"""`synthcodec complete`: answer each row's prompt with a model; the logic is
synthcodec.stages.complete."""

from __future__ import annotations

from typing import Any

import click

from synthcodec.commands.printing import print_summary
from synthcodec.io import parse_field_map
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import options_from, run_options
from synthcodec.settings import click_options, from_kwargs
from synthcodec.stages.complete import CompleteStage, complete_file


@click.command("complete", epilog=MODEL_SPEC_HELP)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click_options(CompleteStage, "model")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map a field to an input column, e.g. --field prompt=text.")
@click_options(CompleteStage, "system", "temperature", "max_tokens", "allow_truncated")
@click.option("--json", is_flag=True,
              help="Ask for a JSON object (sent as the backend's native JSON mode), check that "
                   "the reply parses, re-ask if not; the row gets the parsed object. A reply "
                   "cut off at --max-tokens is then always a failure.")
@click.option("--json-schema", "json_schema_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Like --json, and the reply must validate against this "
                                   "JSON Schema (sent to the backend too).")
@click_options(CompleteStage, "reasks", "output_field", "keep_reasoning")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; re-running the same command resumes it).")
@run_options
def command(input_path: str, fields: tuple[str, ...], run_dir: str, json: bool = False,
            json_schema_path: str | None = None, **kwargs: Any) -> None:
    """Answer the PROMPT field of every row of INPUT with MODEL.

    INPUT may be JSONL, a JSON array, CSV, Parquet or a saved Hugging Face dataset.
    Outputs go to RUN/output.jsonl: each input row, untouched, plus the answer, `truncated`
    and `_synthcodec` ({id, index}: joins it to its input row); rows that could not be
    answered go to RUN/failed.jsonl with the reason in `_synthcodec.reason`. Exit codes: 0 done,
    1 every row failed, 2 bad input or options (nothing written), 3 the model cannot be used
    (no server, bad key), 130 interrupted (run it again to resume).
    """
    settings = from_kwargs(CompleteStage, kwargs)
    options = options_from(kwargs)
    schema = None
    if json_schema_path:
        from synthcodec.llm.json_reply import load_schema

        schema = load_schema(json_schema_path)  # a bad file: one line, before anything runs
    summary = complete_file(input_path, run_dir, options=options,
                            mapping=parse_field_map(fields), json_schema=schema, json=json,
                            **settings)
    code = print_summary(summary)
    if code:
        raise SystemExit(code)
