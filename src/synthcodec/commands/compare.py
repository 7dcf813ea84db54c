"""`synthcodec compare`: judge two models' answers in both orders; the logic is
synthcodec.stages.compare."""

from __future__ import annotations

from typing import Any

import click

from synthcodec.commands.printing import print_comparison, say
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import (
    judge_check_from,
    judge_check_options,
    options_from,
    run_options,
    scores_option,
)
from synthcodec.stages.compare import ANSWER_FIELDS, ID_FIELDS, compare_files


@click.command("compare", epilog=MODEL_SPEC_HELP)
@click.argument("files", nargs=-1, metavar="[A B]", type=click.Path(exists=True, dir_okay=False))
@click.option("--pair", "pairs", multiple=True, metavar="NAME A B",
              type=(str, click.Path(exists=True, dir_okay=False),
                    click.Path(exists=True, dir_okay=False)),
              help="A benchmark to compare: its name and the two answer files. Repeat for "
                   "several benchmarks (one row each plus the total).")
@click.option("--name", default=None,
              help="Benchmark name for A B given as arguments (default: the answers' bench "
                   "field, else A's file name).")
@click.option("--judge", "-m", "judge", default="local", show_default=True,
              help="The judge model (see below).")
@click.option("--key", default=None, metavar="FIELD[,FIELD]",
              help="Fields that identify a question in both files, e.g. --key instruction,input "
                   f"(default: the first of {', '.join(ID_FIELDS)}).")
@click.option("--answer-field", default=None,
              help=f"Field holding the answer (default: first of {', '.join(ANSWER_FIELDS)}).")
@click.option("--question-field", default=None,
              help="Field holding the question text (default: question, or instruction+input, "
                   "or the --key text, or prompt/text).")
@click.option("--category-field", default="category", show_default=True)
@click.option("--label-a", default=None, help="Name of model A in the report.")
@click.option("--label-b", default=None, help="Name of model B in the report.")
@click.option("--judge-prompt", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your copy of the judge prompt (start from synthcodec/prompts/"
                   "judge_pairwise.txt).")
@click.option("--judge-json/--judge-text", "json", default=None,
              help="Ask the judge for JSON {score_1, score_2, explanation} (a schema: llama.cpp "
                   "turns it into a grammar) or for the paper's score line. Default: JSON for "
                   "the embedded/GGUF judge, text for HTTP judges.")
@click.option("--judge-max-tokens", type=click.IntRange(8), default=512, show_default=True)
@click.option("--reasks", type=click.IntRange(0, 10), default=2, show_default=True,
              help="Re-asks when the judge's reply has no readable score line.")
@scores_option()
@click.option("--evidence-first", is_flag=True,
              help="The judge explains first and gives the scores last (Wang et al.'s "
                   "calibration; prompts/judge_pairwise_evidence.txt) instead of the papers' "
                   "scores-first prompt.")
@click.option("--output", "-o", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (created; re-running the same command resumes it).")
@judge_check_options
@run_options
def command(files: tuple[str, ...], pairs: tuple[tuple[str, str, str], ...], name: str | None,
            judge: str, key: str | None, answer_field: str | None, question_field: str | None,
            category_field: str, label_a: str | None, label_b: str | None,
            judge_prompt: str | None, json: bool | None, judge_max_tokens: int,
            reasks: int, scores: str, evidence_first: bool, run_dir: str,
            **kwargs: Any) -> None:
    """Judge model A's answers against model B's, question by question, in both orders.

    Give the two answer files as A B, or one --pair NAME A B per benchmark. Answers are
    paired by question id, or by --key fields when the files have no id. Writes to RUN:
    output.jsonl (per question: both orders' scores, the outcome under the AlpaGasus and
    CodecLM rules), report.json, report.md (paste-ready), chart.png, failed.jsonl.
    Wins, ties and losses are A's. First a small judge check probes JUDGE on a few of the
    pairs; its card goes into the report.
    """
    judge_check = judge_check_from(kwargs)
    options = options_from(kwargs)
    result = compare_files(files, pairs, name=name, run_dir=run_dir, judge=judge, key=key,
                           answer_field=answer_field, question_field=question_field,
                           category_field=category_field, label_a=label_a, label_b=label_b,
                           judge_prompt=judge_prompt, json=json,
                           judge_max_tokens=judge_max_tokens, reasks=reasks, scores=scores,
                           evidence_first=evidence_first,
                           judge_check=judge_check, say=say, options=options)
    code = print_comparison(result)
    if code:
        raise SystemExit(code)
