"""What a run opens: its options (`RunOptions`, the knobs every model-calling command shares)
and its models (`Models`: one client per role, sharing one cache, one usage counter and one
spend), checked before anything is written (`check_models`). Where a stage then runs is
synthcodec.executors (`run_stage`); the run around it (run directory, publish, manifest) is
synthcodec.driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from synthcodec.cache import RequestCache, default_cache_path
from synthcodec.cost import Spend
from synthcodec.errors import UserError
from synthcodec.llm import check_spec, load_backend, redact_spec
from synthcodec.llm.batch import BatchLedger, BatchSender, BatchSettings
from synthcodec.llm.client import LLMClient, RetryPolicy, Stats, default_in_flight
from synthcodec.llm.spec import find_kind
from synthcodec.prices import PriceBook
from synthcodec.settings import setting

# Exit codes of every model-calling command (documented in the README).
EXIT_OK, EXIT_ALL_FAILED, EXIT_INTERRUPTED = 0, 1, 130
EXECUTORS = ("local", "ray")


@dataclass
class RunOptions:
    """Knobs every LLM command shares: each field is its CLI option, recipe key and API
    keyword (synthcodec.settings)."""

    concurrency: int | None = setting(
        None, "--concurrency", "-j", type=click.IntRange(1, 4096),
        help="Requests in flight per endpoint (default: 64 for HTTP models, 2 for the "
             "embedded one).")
    cache_path: str | None = setting(
        None, "--cache", type=click.Path(dir_okay=False), envvar="SYNTHCODEC_CACHE",
        help="Request cache file (SQLite). Default: ~/.cache/synthcodec/requests.sqlite.")
    no_cache: bool = setting(False, "--no-cache",
                             help="Neither read nor write the request cache.")
    rpm: float | None = setting(None, "--rpm", type=click.FloatRange(min=0, min_open=True),
                                help="Limit requests per minute (per model endpoint).")
    tpm: float | None = setting(
        None, "--tpm", type=click.FloatRange(min=0, min_open=True),
        help="Limit tokens per minute (per model endpoint; estimated before sending).")
    timeout: float = setting(300.0, "--timeout", type=click.FloatRange(min=0, min_open=True),
                             help="Seconds to wait for one HTTP request.")
    max_attempts: int = setting(
        8, "--max-attempts", type=click.IntRange(1, 100),
        help="Tries per request for 5xx/timeouts (429s are retried more patiently).")
    overwrite: bool = setting(
        False, "--overwrite",
        help="Discard an existing run in -o with a different configuration.")
    limit: int | None = setting(None, "--limit", type=click.IntRange(min=1),
                                help="Use only the first N input rows (a quick try).")
    progress: bool = setting(True, "--quiet", "-q", invert=True, help="No progress display.")
    progress_interval: float | None = None
    parquet: bool = setting(False, "--parquet", help="Also write the output as Parquet.")
    # Money (synthcodec.cost). None of these is part of a run's configuration: a re-run with a
    # larger budget or corrected prices resumes the same run.
    budget: float | None = setting(  # USD over every invocation of the run
        None, "--budget", type=click.FloatRange(min=0), metavar="USD",
        help="Stop sending before the run (all its invocations) would spend more than USD; "
             "in-flight requests finish, exit code 4; re-run with a larger --budget to go "
             "on. Needs a price for every model.")
    max_tokens_total: int | None = setting(  # prompt + completion tokens, ditto
        None, "--max-tokens-total", type=click.IntRange(min=1), metavar="N",
        help="Like --budget, in tokens (prompt + completion): for local servers with no "
             "price.")
    prices_file: str | None = setting(  # else $SYNTHCODEC_PRICES
        None, "--prices", type=click.Path(dir_okay=False), envvar="SYNTHCODEC_PRICES",
        help="Price table (TOML or JSON, USD per 1M tokens) over the packaged one.")
    price: tuple[str, ...] = setting(
        (), "--price", multiple=True, metavar="[ROLE|MODEL=]IN,OUT[,CACHED]",
        help="USD per 1M input and output tokens (and cached input) for the run's models, or "
             "one role's (judge=, strong=, target=, model=).")
    # Where stages run (not part of a run's configuration either: a run started on one
    # executor resumes on the other). "ray": synthcodec.executors.ray, on `ray_address` or
    # $RAY_ADDRESS, else on a local Ray cluster.
    executor: str = setting(
        "local", "--executor", type=click.Choice(EXECUTORS),
        help="Where records run: this process, or shards of the input on a Ray cluster "
             "(needs synthcodec[ray]; docs/scale-out.md).")
    ray_address: str | None = setting(
        None, "--ray-address", type=str, envvar="RAY_ADDRESS", metavar="ADDRESS",
        help="The Ray cluster to join (default $RAY_ADDRESS, else a local one is started).")
    # Provider batch APIs (llm/batch.py): not part of a run's configuration either, so a run
    # may be started one way and finished the other (the cache holds every answer).
    batch: bool = setting(
        False, "--batch",
        help="Send through the provider's batch API (/v1/files + /v1/batches: OpenAI and "
             "servers that speak it), at its batch price. Batch ids are kept in "
             "RUN/batches.jsonl: a re-run resumes polling them.")
    batch_poll: float = setting(
        30.0, "--batch-poll", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
        help="With --batch: seconds between polls of a batch.")
    batch_size: int = setting(  # requests per batch at most (and records in flight)
        50_000, "--batch-size", type=click.IntRange(1, 50_000), metavar="N",
        help="With --batch: requests per batch at most (OpenAI: 50,000).")

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise UserError(f"unknown executor {self.executor!r}: use one of "
                            f"{', '.join(EXECUTORS)}")
        if self.ray_address and self.executor != "ray":
            raise UserError("--ray-address goes with --executor ray")
        if self.batch and self.executor == "ray":
            raise UserError("--batch sends a run's requests from one process: drop "
                            "--executor ray (a provider's batch API needs no cluster)")

    def batch_settings(self) -> BatchSettings:
        return BatchSettings(poll=self.batch_poll, settle=min(1.0, self.batch_poll),
                             max_requests=self.batch_size)

    def check_batch(self, specs: Mapping[str, str],
                    backends: Mapping[str, Any] | None = None) -> None:
        """--batch needs the cache and one OpenAI-compatible endpoint per model."""
        if not self.batch:
            return
        if self.no_cache:
            raise UserError("--batch keeps every answer in the request cache: drop --no-cache "
                            "(or --cache PATH for a cache of its own)")
        for role, spec in specs.items():
            if backends and role in backends:
                ok = getattr(backends[role], "batch_api", False)
            else:
                kind = find_kind(spec)
                ok = kind is not None and kind.batchable
            if not ok:
                raise UserError(f"--batch needs an OpenAI-compatible server with one URL "
                                f"(NAME@URL or openai:NAME), not {role} {redact_spec(spec)!r}")

    def price_book(self) -> PriceBook:
        return PriceBook.build(self.prices_file, self.price)

    def check_prices(self, specs: Mapping[str, str]) -> None:
        """Bad price files or --price, or a --budget for a model with no price: stop first."""
        book = self.price_book()
        book.check(specs)
        if self.budget is not None:
            unknown = [redact_spec(s) for r, s in specs.items() if book.price(r, s) is None]
            if unknown:
                raise UserError(f"--budget needs a price for {', '.join(unknown)}: add it with "
                                "--price IN,OUT (USD per 1M tokens) or --prices FILE; "
                                "--max-tokens-total caps tokens instead")

    def cache_file(self) -> str | Path | None:
        """The request cache's file: --cache, else the default; None with --no-cache."""
        return None if self.no_cache else self.cache_path or default_cache_path()

    def cache(self) -> RequestCache | None:
        path = self.cache_file()
        return None if path is None else RequestCache(path)

    def check_cache(self) -> None:
        """Open and close the cache once: a bad --cache stops before the run dir is touched."""
        cache = self.cache()
        if cache is not None:
            cache.close()


def check_models(specs: Mapping[str, str], backends: Mapping[str, Any] | None = None,
                 options: RunOptions | None = None) -> None:
    """Every model spec is well-formed, and priced when there is a budget (checked before
    anything is written)."""
    for role, spec in specs.items():
        if not (backends and role in backends):
            check_spec(spec)
    if options is not None:
        options.check_batch(specs, backends)
        options.check_prices(specs)


def shown_models(specs: Mapping[str, str]) -> dict[str, str]:
    """Model specs as configs and reports store them: credentials replaced by ***."""
    return {role: redact_spec(spec) for role, spec in specs.items()}


@dataclass
class Models:
    """The model clients of one run, sharing one cache and one usage counter."""

    clients: dict[str, LLMClient]
    stats: Stats
    cache: RequestCache | None
    spend: Spend = field(default_factory=Spend)
    specs: dict[str, str] = field(default_factory=dict)  # role -> spec, as given
    backends: dict[str, Any] = field(default_factory=dict)  # role -> backend given in Python
    batch_size: int | None = None  # --batch: records in flight (a pass takes all of them)

    def __getitem__(self, role: str) -> LLMClient:
        return self.clients[role]

    @classmethod
    def open(cls, specs: Mapping[str, str], options: RunOptions,
             backends: Mapping[str, Any] | None = None,
             spent_before: Mapping[str, Any] | None = None,
             run_dir: str | Path | None = None) -> "Models":
        """`spent_before`: the run's usage from earlier invocations (what the budget counts);
        `run_dir`: where --batch keeps its ledger of provider batches."""
        options.check_batch(specs, backends)
        if options.batch and run_dir is None:
            raise UserError("--batch needs a run directory for its ledger of batches")
        stats = Stats()
        book = options.price_book()
        spend = Spend(budget_usd=options.budget, max_tokens=options.max_tokens_total,
                      before=spent_before)
        cache = options.cache()
        ledger = BatchLedger(run_dir, stats) if options.batch and run_dir is not None else None
        clients: dict[str, LLMClient] = {}
        by_spec: dict[str, Any] = {}
        for role, spec in specs.items():
            if backends and role in backends:
                backend = backends[role]
            else:  # two roles naming one model share one backend (one embedded model in memory)
                backend = by_spec.get(spec) or load_backend(spec, timeout=options.timeout)
                by_spec[spec] = backend
            price = book.price(role, spec)
            batch = None
            if ledger is not None and cache is not None:
                batch = BatchSender(backend, cache, ledger, options.batch_settings())
                price = price.for_batch() if price is not None else None
            clients[role] = LLMClient(
                backend,
                cache=cache,
                max_in_flight=(options.batch_size if batch is not None
                               else default_in_flight(backend, options.concurrency)),
                rpm=options.rpm,
                tpm=options.tpm,
                retry=RetryPolicy(max_attempts=options.max_attempts),
                stats=stats,
                meter=spend.meter(redact_spec(spec), price, stats),
                batch=batch,
            )
        return cls(clients, stats, cache, spend, dict(specs),
                   backends={r: b for r, b in (backends or {}).items() if r in specs},
                   batch_size=options.batch_size if ledger is not None else None)

    def concurrency(self) -> int:
        """Records in flight: enough to fill every endpoint (--concurrency, already applied to
        each client's limit, is per endpoint); with --batch, a batch's worth, so that a pass
        collects the whole stage."""
        if self.batch_size is not None:
            return self.batch_size
        # A stage with no model (score's length and random) still runs records side by side.
        return max((c.max_in_flight for c in self.clients.values()), default=64)

    def endpoint_limit(self) -> int:
        """Requests in flight one endpoint takes (--concurrency, else the backends' own limit;
        the largest over the models): what `--executor ray` splits over its shards."""
        return max((e.limit.maximum for c in self.clients.values() for e in c.endpoints),
                   default=64)

    async def aclose(self) -> None:
        seen: set[int] = set()
        for client in self.clients.values():
            if id(client.backend) not in seen:
                seen.add(id(client.backend))
                await client.aclose()
        if self.cache is not None:
            self.cache.close()
