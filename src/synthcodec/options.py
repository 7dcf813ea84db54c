"""Click options shared by every command that calls a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from synthcodec.session import EXECUTORS, RunOptions


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --concurrency, --cache, --no-cache, --rpm, --tpm, --timeout, --overwrite, --limit,
    --quiet, --parquet, --budget, --max-tokens-total, --prices, --price, --batch,
    --batch-poll, --batch-size, --executor, --ray-address."""
    decorators = [
        click.option("--concurrency", "-j", type=click.IntRange(1, 4096), default=None,
                     help="Requests in flight per endpoint (default: 64 for HTTP models, 2 for the "
                          "embedded one)."),
        click.option("--cache", "cache_path", type=click.Path(dir_okay=False), default=None,
                     envvar="SYNTHCODEC_CACHE",
                     help="Request cache file (SQLite). Default: ~/.cache/synthcodec/requests.sqlite."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the request cache."),
        click.option("--rpm", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Limit requests per minute (per model endpoint)."),
        click.option("--tpm", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Limit tokens per minute (per model endpoint; estimated before sending)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0,
                     show_default=True, help="Seconds to wait for one HTTP request."),
        click.option("--max-attempts", type=click.IntRange(1, 100), default=8, show_default=True,
                     help="Tries per request for 5xx/timeouts (429s are retried more patiently)."),
        click.option("--overwrite", is_flag=True,
                     help="Discard an existing run in -o with a different configuration."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use only the first N input rows (a quick try)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress display."),
        click.option("--parquet", is_flag=True, help="Also write the output as Parquet."),
        click.option("--budget", type=click.FloatRange(min=0), default=None, metavar="USD",
                     help="Stop sending before the run (all its invocations) would spend more "
                          "than USD; in-flight requests finish, exit code 4; re-run with a "
                          "larger --budget to go on. Needs a price for every model."),
        click.option("--max-tokens-total", type=click.IntRange(min=1), default=None,
                     metavar="N", help="Like --budget, in tokens (prompt + completion): for "
                                       "local servers with no price."),
        click.option("--prices", "prices_file", type=click.Path(dir_okay=False), default=None,
                     envvar="SYNTHCODEC_PRICES",
                     help="Price table (TOML or JSON, USD per 1M tokens) over the packaged one."),
        click.option("--price", "price", multiple=True, metavar="[ROLE|MODEL=]IN,OUT[,CACHED]",
                     help="USD per 1M input and output tokens (and cached input) for the "
                          "run's models, or one role's (judge=, strong=, target=, model=)."),
        click.option("--executor", type=click.Choice(EXECUTORS), default="local",
                     show_default=True,
                     help="Where records run: this process, or shards of the input on a Ray "
                          "cluster (needs synthcodec[ray]; docs/scale-out.md)."),
        click.option("--ray-address", default=None, envvar="RAY_ADDRESS", metavar="ADDRESS",
                     help="The Ray cluster to join (default $RAY_ADDRESS, else a local one is "
                          "started)."),
        click.option("--batch", is_flag=True,
                     help="Send through the provider's batch API (/v1/files + /v1/batches: "
                          "OpenAI and servers that speak it), at its batch price. Batch ids "
                          "are kept in RUN/batches.jsonl: a re-run resumes polling them."),
        click.option("--batch-poll", type=click.FloatRange(min=0, min_open=True), default=30.0,
                     show_default=True, metavar="SECONDS",
                     help="With --batch: seconds between polls of a batch."),
        click.option("--batch-size", type=click.IntRange(1, 50_000), default=50_000,
                     show_default=True, metavar="N",
                     help="With --batch: requests per batch at most (OpenAI: 50,000)."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def options_from(kwargs: dict[str, Any]) -> RunOptions:
    """Pop the shared options out of a command's kwargs. (A bad price file or --price is
    refused by check_models, with the other checks before the run directory is touched.)"""
    executor, ray_address = kwargs.pop("executor"), kwargs.pop("ray_address")
    return RunOptions(
        concurrency=kwargs.pop("concurrency"),
        cache_path=kwargs.pop("cache_path"),
        no_cache=kwargs.pop("no_cache"),
        rpm=kwargs.pop("rpm"),
        tpm=kwargs.pop("tpm"),
        timeout=kwargs.pop("timeout"),
        max_attempts=kwargs.pop("max_attempts"),
        overwrite=kwargs.pop("overwrite"),
        limit=kwargs.pop("limit"),
        progress=not kwargs.pop("quiet"),
        parquet=kwargs.pop("parquet"),
        budget=kwargs.pop("budget"),
        max_tokens_total=kwargs.pop("max_tokens_total"),
        prices_file=kwargs.pop("prices_file"),
        price=tuple(kwargs.pop("price")),
        executor=executor,
        # $RAY_ADDRESS alone does not ask for Ray: it only says where, when Ray is used.
        ray_address=ray_address if executor == "ray" else None,
        batch=kwargs.pop("batch"),
        batch_poll=kwargs.pop("batch_poll"),
        batch_size=kwargs.pop("batch_size"),
    )


def judge_check_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --judge-check-probes N and --no-judge-check (the small judge check a judging
    command runs before its main work; synthcodec.judgecheck)."""
    from synthcodec.judgecheck import PRE_CHECK_PROBES

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
    from synthcodec.expected_score import SCORES_CHOICES

    return click.option(flag, "scores", type=click.Choice(SCORES_CHOICES), default="text",
                        show_default=True,
                        help="Read the judge's scores as written (text), or as the "
                             "probability-weighted mean of the score tokens (logprobs, G-Eval: "
                             "a short generation of the scores alone; needs a backend that "
                             "returns log-probabilities: the embedded model, llama.cpp server, "
                             "vLLM, SGLang, OpenAI). Default text: the two are not yet measured "
                             "side by side (docs/judging.md).")
