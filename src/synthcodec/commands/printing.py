"""What the commands print of the library's results (the library itself prints nothing):
a run's summary, the judge check's lines as they happen, compare's tables."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from synthcodec.driver import RunSummary, Summary
    from synthcodec.stages.compare import CompareResult


def say(line: str) -> None:
    """A line on stderr as it happens (the judge check's cost and verdict)."""
    print(line, file=sys.stderr, flush=True)


def print_lines(lines: list[str]) -> None:
    """Lines on stderr (a summary, a histogram, what to run next)."""
    for line in lines:
        print(line, file=sys.stderr)


def print_summary(summary: Summary) -> int:
    """Print a stage's summary on stderr; returns the command's exit code."""
    print_lines(summary.lines())
    return summary.exit_code


def print_stage_command(done: RunSummary) -> None:
    """A CodecLM stage command's closing lines on stderr (the lines before them were said
    as they happened), then its exit code."""
    print_lines(done.lines)
    if done.exit_code:
        raise SystemExit(done.exit_code)


def print_comparison(result: CompareResult) -> int:
    """compare's verdict line and tables on stdout, its summary on stderr; the exit code."""
    for line in result.report_lines():
        click.echo(line)
    print_lines(result.summary_lines())
    return result.exit_code
