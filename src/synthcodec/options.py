"""Click options shared by every command that calls a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from synthcodec.session import RunOptions
from synthcodec.settings import click_options, from_kwargs


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add every RunOptions setting as an option (--concurrency, --cache, --rpm, --quiet,
    --budget, --executor, --batch, ...: the fields of session.RunOptions say each once)."""
    return click_options(RunOptions)(fn)


def options_from(kwargs: dict[str, Any]) -> RunOptions:
    """Pop the shared options out of a command's kwargs. (A bad price file or --price is
    refused by check_models, with the other checks before the run directory is touched.)"""
    values = from_kwargs(RunOptions, kwargs)
    if values.get("executor", "local") != "ray":
        # $RAY_ADDRESS alone does not ask for Ray: it only says where, when Ray is used.
        values.pop("ray_address", None)
    return RunOptions(**values)


def judge_check_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --judge-check-probes N and --no-judge-check (the small judge check a judging
    command runs before its main work; synthcodec.judging.check)."""
    from synthcodec.judging.check import PRE_CHECK_PROBES

    fn = click.option("--no-judge-check", "no_judge_check", is_flag=True,
                      help="Skip the judge check before the run.")(fn)
    return click.option("--judge-check-probes", type=click.IntRange(0, 100),
                        default=PRE_CHECK_PROBES, show_default=True, metavar="N",
                        help="Before the run, probe the judge with N pairs of each kind whose "
                             "right answer is known (cached; its card goes to RUN/"
                             "judge_card.md and the report). 0 skips it.")(fn)


def judge_check_from(kwargs: dict[str, Any]) -> int:
    """Pop the judge check options: probes per kind, 0 for none."""
    probes = int(kwargs.pop("judge_check_probes"))
    return 0 if kwargs.pop("no_judge_check") else probes


def scores_option(flag: str = "--scores") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    from synthcodec.judging.expected_score import SCORES_CHOICES, SCORES_HELP

    return click.option(flag, "scores", type=click.Choice(SCORES_CHOICES), default="text",
                        show_default=True, help=SCORES_HELP)
