"""`synthcodec judge-check`: probe a judge with pairs whose right answer is known and write its
judge card; the logic is synthcodec.judging.check."""

from __future__ import annotations

from typing import Any

import click

from synthcodec.commands.printing import say
from synthcodec.judging.check import CARD_JSON, CARD_MD, DEFAULT_PROBES
from synthcodec.judging.check.files import CheckSettings, check_files
from synthcodec.llm import MODEL_SPEC_HELP
from synthcodec.options import options_from, run_options, scores_option
from synthcodec.stages.rate import field_mapping


@click.command("judge-check", epilog=MODEL_SPEC_HELP)
@click.argument("data", nargs=-1, required=True, metavar="DATA [B]",
                type=click.Path(exists=True))
@click.option("--judge", "-m", default=None,
              help="The judge model (default: the run's judge for a run directory, else local).")
@click.option("--kind", "role", type=click.Choice(["rater", "pairwise"]), default=None,
              help="Check the judge as a rater (rate's 0-5 prompt) or a pairwise judge "
                   "(compare's and generate's). Default: rater for one file, pairwise for two.")
@click.option("--probes", "per_kind", type=click.IntRange(1, 1000), default=DEFAULT_PROBES,
              show_default=True, help="Probes of each kind.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Human labels: rows {id, preference: a|b|tie} for pairs, {id or "
                   "instruction, keep: true|false} for rows; adds agreement, kappa and AUC.")
@click.option("--field", "fields", multiple=True, metavar="OURS=THEIRS",
              help="Map instruction/input/response to columns (default: response=output).")
@click.option("--key", default=None, metavar="FIELD[,FIELD]",
              help="Fields that pair two answer files (as compare --key).")
@click.option("--answer-field", default=None, help="The answers' field (as compare).")
@click.option("--question-field", default=None, help="The question's field (as compare).")
@click.option("--dimension", default=None, help="What a rater rates (default: accuracy).")
@click.option("--template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your rating prompt (as rate --template).")
@click.option("--judge-prompt", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your pairwise judge prompt (as compare --judge-prompt).")
@click.option("--evidence-first", is_flag=True,
              help="Check the evidence-first pairwise prompt (as compare --evidence-first).")
@click.option("--json/--text", default=None,
              help="JSON answers or the papers' score line (default as in rate and compare).")
@click.option("--max-tokens", type=click.IntRange(8), default=None,
              help="Longest judge reply (default: rate's 256, compare's 512).")
@click.option("--reasks", type=click.IntRange(0, 10), default=2, show_default=True)
@scores_option()
@click.option("--output", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help=f"Folder for {CARD_JSON} and {CARD_MD}.")
@run_options
def command(data: tuple[str, ...], judge: str | None, role: str | None, per_kind: int,
            labels: str | None, fields: tuple[str, ...], key: str | None,
            answer_field: str | None, question_field: str | None, dimension: str | None,
            template: str | None, judge_prompt: str | None, evidence_first: bool,
            json: bool | None,
            max_tokens: int | None, reasks: int, scores: str, out_dir: str,
            **kwargs: Any) -> None:
    """Probe JUDGE with pairs whose right answer is known and write its judge card.

    DATA is an instruction file with responses, two answer files A B, or a rate or compare
    run directory. The probes: swap (the same two answers in both orders), wrong question
    (the real response against another instruction's), cut short (against its first
    third), padding (against itself plus filler) and identical (the same answer twice), all
    through the same prompts and parsers as rate and compare, cached like every request.
    The card gives each probe's pass rate with a 95% interval and a verdict: usable, weak or
    noise. Exit code 0 whatever the verdict.
    """
    options = options_from(kwargs)
    settings = CheckSettings(mapping=field_mapping(fields), key=key, answer_field=answer_field, question_field=question_field,
                             dimension=dimension, template=template, judge_prompt=judge_prompt,
                             json=json, max_tokens=max_tokens, reasks=reasks,
                             scores=scores, evidence_first=evidence_first)
    card = check_files(list(data), out_dir, judge=judge, options=options, role=role,
                       per_kind=per_kind, labels=labels, settings=settings, say=say)
    click.echo(card.markdown())
    click.echo(f"wrote {out_dir}/{CARD_JSON} and {out_dir}/{CARD_MD}", err=True)
