"""The `synthcodec` command: thin; each subcommand lives in synthcodec.commands.<name>."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from typing import Any

import click

from synthcodec import __version__
from synthcodec.errors import CannotWrite, UserError, write_failure

# name -> (module, short help). A module is imported only when its command runs; `--help`
# lists the commands from this table, so it imports none of them. Each short help is the
# first sentence of the command's docstring (tests/unit/test_imports.py checks they agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "complete": ("synthcodec.commands.complete",
                 "Answer the PROMPT field of every row of INPUT with MODEL."),
    "rate": ("synthcodec.commands.rate", "Rate every (instruction, input, response) row of "
             "DATA from 0 to 5 with JUDGE (AlpaGasus)."),
    "score": ("synthcodec.commands.score", "Add selection signals (IFD, response length, a "
              "seeded random key) to every row of DATA."),
    "select": ("synthcodec.commands.select", "Keep the rows of a `synthcodec rate` or `score` "
               "RUN (or any file) that a signal ranks best."),
    "answer": ("synthcodec.commands.answer",
               "Answer every question of the benchmark file BENCH with MODEL."),
    "compare": ("synthcodec.commands.compare", "Judge model A's answers against model B's, "
                "question by question, in both orders."),
    "judge-check": ("synthcodec.commands.judge_check", "Probe JUDGE with pairs whose right "
                    "answer is known and write its judge card."),
    # CodecLM generation (synthcodec.codeclm)
    "encode": ("synthcodec.commands.encode",
               "Name the use case and up to 3 skills of every seed instruction in SEEDS."),
    "metadata": ("synthcodec.commands.metadata",
                 "Build RUN/metadata.jsonl from RUN/encoded.jsonl."),
    "decode": ("synthcodec.commands.decode", "Write K base instructions per entry of "
               "RUN/metadata.jsonl into RUN/instructions.jsonl."),
    "rubrics": ("synthcodec.commands.rubrics", "Write Self-Rubrics (rubrics + actions) for "
                "every entry of RUN/metadata.jsonl."),
    "improve": ("synthcodec.commands.improve", "Rewrite round R's undecided instructions "
                "following one random rubric action."),
    "respond": ("synthcodec.commands.respond",
                "Answer round R's instructions with the strong and the target model."),
    "contrast": ("synthcodec.commands.contrast", "Judge round R's answers in both orders and "
                 "decide: keep, improve or reject."),
    "generate": ("synthcodec.commands.generate",
                 "Generate instruction-response pairs tailored to SEEDS that TARGET is bad at."),
    "run": ("synthcodec.commands.run", "Run every table of RECIPE (TOML), e.g. a [generate] "
            "table with all generate options."),
    "train": ("synthcodec.commands.train",
              "Fine-tune a model on DATA with LoRA; write the adapter to -o."),
    "experiment": ("synthcodec.commands.experiment", "Run the [experiment] table of RECIPE "
                   "(TOML): build datasets, train a LoRA adapter on each, answer a benchmark "
                   "with each adapter, judge them pairwise, write report.md."),
    "benchmark": ("synthcodec.commands.benchmark", "Run standard benchmarks on MODEL with "
                  "EleutherAI's lm-evaluation-harness."),
    # see and share a run
    "view": ("synthcodec.commands.view", "Browse RUN (finished or still running) in a local "
             "web page: rows with status, reason and scores, filters and search, each row's "
             "lineage, charts, and review by hand (RUN/review.jsonl, honoured by `select` and "
             "`push`)."),
    "push": ("synthcodec.commands.push", "Push RUN's kept rows (Parquet), charts and a "
             "generated data card to the Hugging Face Hub as dataset OWNER/NAME, with the token "
             "in $HF_TOKEN ($HF_ENDPOINT: another Hub)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).command  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, from COMMANDS' short helps instead of the imported commands."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=COMMANDS[name][1])
                                 .get_short_help_str(limit)) for name in names])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synthcodec")
def cli() -> None:
    """Make instruction-tuning data tailored to a target model, filter datasets with an LLM
    rater, and evaluate with a pairwise LLM judge.

    Every model-calling command writes a run directory (-o RUN) that a re-run resumes, and
    caches every request, so repeating a command sends no requests twice.
    """


def _sigterm_as_ctrl_c(signum: int, frame: Any) -> None:
    """SIGTERM does what a first Ctrl-C does in whatever phase the command is in: drain the
    records in flight while a stage runs (the engine's handler), stop cleanly otherwise."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise KeyboardInterrupt  # Ctrl-C is ignored here (a background job): stop anyway
    signal.raise_signal(signal.SIGINT)


class _StderrLines(logging.Handler):
    """The library's log records (logger "synthcodec"), each as its bare message on the
    stderr of the moment (so a test's captured stderr gets them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:
            self.handleError(record)


def main(argv: list[str] | None = None, *, sigint: Any = None) -> Any:
    """The command; `sigint`: the SIGINT handler to put back once started (synthcodec.__main__
    starts with a quiet one). While it runs, the library's notices (INFO and up) go to
    stderr."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c) if on_main_thread else None
    logger, handler = logging.getLogger("synthcodec"), _StderrLines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return _main(argv, sigint if on_main_thread else None)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        if on_main_thread:
            signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


def _main(argv: list[str] | None, sigint: Any) -> Any:
    try:
        if sigint is not None:  # from here a Ctrl-C is a KeyboardInterrupt, caught below
            signal.signal(signal.SIGINT, sigint)
        return cli.main(args=argv, prog_name="synthcodec", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # a full disk met outside the run directory's own writers
        reason = write_failure(exc)
        if reason is None:
            raise
        error = CannotWrite(getattr(exc, "filename", None) or "a file", reason)
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
