"""`synthcodec complete`: answer each row's prompt with a model; the logic is
synthcodec.stages.complete."""

from __future__ import annotations

from typing import Any

import click

from synthcodec.commands.printing import print_summary
from synthcodec.io import parse_field_map
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import options_from, run_options
from synthcodec.stages.complete import complete_file


@click.command("complete", epilog=MODEL_SPEC_HELP)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("--model", "-m", default="local", show_default=True, help="The model (see below).")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map a field to an input column, e.g. --field prompt=text.")
@click.option("--system", default=None, help="A system message sent with every prompt.")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=512, show_default=True)
@click.option("--allow-truncated/--fail-truncated", default=True, show_default=True,
              help="Keep an answer cut off at --max-tokens, marked truncated: true (default), "
                   "or count it as failed.")
@click.option("--json", is_flag=True,
              help="Ask for a JSON object (sent as the backend's native JSON mode), check that "
                   "the reply parses, re-ask if not; the row gets the parsed object. A reply "
                   "cut off at --max-tokens is then always a failure.")
@click.option("--json-schema", "json_schema_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Like --json, and the reply must validate against this "
                                   "JSON Schema (sent to the backend too).")
@click.option("--json-reasks", "reasks", type=click.IntRange(0, 10), default=2, show_default=True,
              help="With --json/--json-schema: re-ask an invalid reply this many times, then "
                   "put the row in failed.jsonl with the reason.")
@click.option("--output-field", default="response", show_default=True,
              help="Name of the answer field added to each row.")
@click.option("--keep-reasoning", is_flag=True,
              help="Keep a reasoning model's trace (<think>...</think>, reasoning_content) "
                   "as a `reasoning` column, for building reasoning data. Default: it is "
                   "kept out of the answer, in `_synthcodec.reasoning`.")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; re-running the same command resumes it).")
@run_options
def command(input_path: str, model: str, fields: tuple[str, ...], system: str | None,
            temperature: float, max_tokens: int, allow_truncated: bool, output_field: str,
            run_dir: str, json: bool = False, json_schema_path: str | None = None,
            reasks: int = 2, keep_reasoning: bool = False,
            **kwargs: Any) -> None:
    """Answer the PROMPT field of every row of INPUT with MODEL.

    INPUT may be JSONL, a JSON array, CSV, Parquet or a saved Hugging Face dataset.
    Outputs go to RUN/output.jsonl: each input row, untouched, plus the answer, `truncated`
    and `_synthcodec` ({id, index}: joins it to its input row); rows that could not be
    answered go to RUN/failed.jsonl with the reason in `_synthcodec.reason`. Exit codes: 0 done,
    1 every row failed, 2 bad input or options (nothing written), 3 the model cannot be used
    (no server, bad key), 130 interrupted (run it again to resume).
    """
    options = options_from(kwargs)
    schema = None
    if json_schema_path:
        from synthcodec.llm.json_reply import load_schema

        schema = load_schema(json_schema_path)  # a bad file: one line, before anything runs
    summary = complete_file(input_path, run_dir, model=model, options=options,
                            mapping=parse_field_map(fields), system=system,
                            temperature=temperature, max_tokens=max_tokens,
                            allow_truncated=allow_truncated, output_field=output_field,
                            json_schema=schema, json=json, reasks=reasks,
                            keep_reasoning=keep_reasoning)
    code = print_summary(summary)
    if code:
        raise SystemExit(code)
