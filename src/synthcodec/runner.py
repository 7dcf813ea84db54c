"""Running stages: `run_stage` (the one place any stage runs) and `run_file_stage` (a stage
over an input file into a run directory), with the models, options and summary they share.

`run_file_stage` validates the whole input first, opens (or resumes) the run directory,
builds the model clients with the shared cache, runs the stage, publishes the outputs
atomically and writes the manifest. Commands only supply their fields and their stage.
One module (a little over 500 lines) because these pieces are what every command shares:
splitting them would scatter one run's wiring over several files.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.cache import RequestCache, default_cache_path
from synthcodec.cost import EXIT_BUDGET, Spend
from synthcodec.engine import Item, LocalExecutor, Record, RunResult, StageLike, StopWhen
from synthcodec.errors import UserError
from synthcodec.failures import advice_lines, repeat_advice
from synthcodec.io import META, FieldSpec, extract, iter_rows, scan_input, write_parquet
from synthcodec.llm import check_spec, load_backend, redact_spec
from synthcodec.llm.batch import BatchLedger, BatchSender, BatchSettings
from synthcodec.llm.client import LLMClient, RetryPolicy, Stats, default_in_flight
from synthcodec.llm.spec import find_kind
from synthcodec.prices import PriceBook
from synthcodec.progress import Counts, Progress
from synthcodec.store import FAILED, OK, REJECTED, Journal, RunDir, canonical_json, hash_value

# Exit codes of every model-calling command (documented in the README).
EXIT_OK, EXIT_ALL_FAILED, EXIT_INTERRUPTED = 0, 1, 130
EXECUTORS = ("local", "ray")


@dataclass
class RunOptions:
    """Knobs every LLM command shares (the CLI's common options)."""

    concurrency: int | None = None
    cache_path: str | None = None
    no_cache: bool = False
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 300.0
    max_attempts: int = 8
    overwrite: bool = False
    limit: int | None = None
    progress: bool = True
    progress_interval: float | None = None
    parquet: bool = False
    # Money (synthcodec.cost). None of these is part of a run's configuration: a re-run with a
    # larger budget or corrected prices resumes the same run.
    budget: float | None = None  # USD over every invocation of the run
    max_tokens_total: int | None = None  # prompt + completion tokens, ditto
    prices_file: str | None = None  # else $SYNTHCODEC_PRICES
    price: tuple[str, ...] = ()  # --price [ROLE_OR_MODEL=]IN,OUT[,CACHED]
    # Where stages run (not part of a run's configuration either: a run started on one
    # executor resumes on the other). "ray": synthcodec.engine_ray, on `ray_address` or
    # $RAY_ADDRESS, else on a local Ray cluster.
    executor: str = "local"
    ray_address: str | None = None
    # Provider batch APIs (llm/batch.py): not part of a run's configuration either, so a run
    # may be started one way and finished the other (the cache holds every answer).
    batch: bool = False
    batch_poll: float = 30.0  # seconds between polls of a batch
    batch_size: int = 50_000  # requests per batch at most (and records in flight)

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


def record_id(idx: int, row: Mapping[str, Any]) -> str:
    """Deterministic: position in the input plus a hash of the row's content."""
    digest = hashlib.sha1(canonical_json(row).encode()).hexdigest()[:10]
    return f"{idx:07d}-{digest}"


@dataclass
class Summary:
    run_dir: Path
    records_in: int
    kept: int
    rejected: int
    failed: int
    resumed: int
    stats: Stats
    seconds: float
    interrupted: bool
    outputs: dict[str, int] = field(default_factory=dict)
    # failed records whose failure a re-run would repeat, by what to do instead (failures.py)
    repeating: dict[str, int] = field(default_factory=dict)
    spend: Spend | None = None
    failed_text: str = "records failed"  # e.g. "pairs could not be judged"
    missing: int = 0  # records not done yet (stopped early): not in the published files
    judge_line: str | None = None  # the judge check's verdict, first in the summary

    @property
    def budget_stop(self) -> str | None:
        return self.spend.stopped if self.spend is not None else None

    @property
    def exit_code(self) -> int:
        """4 budget reached; 130 interrupted; 1 when records came in and every one failed;
        else 0."""
        if self.budget_stop:
            return EXIT_BUDGET
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.failed and not self.kept and not self.rejected:
            return EXIT_ALL_FAILED
        return EXIT_OK

    def lines(self) -> list[str]:
        s = self.stats
        lines = [self.judge_line] if self.judge_line else []
        lines += [
            f"records in {self.records_in} | out {self.kept} | rejected {self.rejected} | "
            f"failed {self.failed}" + (f" | resumed {self.resumed}" if self.resumed else ""),
            f"requests sent {s.requests}" + batches_text(s)
            + f" | cache hits {s.cache_hits} | retries {s.retries} | "
            f"tokens in {s.prompt_tokens} out {s.completion_tokens} | wall {self.seconds:.1f}s",
        ]
        if self.spend is not None:
            done = self.kept + self.rejected + self.failed
            projected = None
            if done < self.records_in and self.resumed < done:
                projected = self.spend.projection(self.spend.usd, done - self.resumed,
                                                  self.records_in - done)
            lines += self.spend.lines(kept=self.kept, projected=projected)
        for name, n in self.outputs.items():
            lines.append(f"wrote {self.run_dir / name} ({n} rows)")
        if self.missing:
            lines.append(f"incomplete: those files hold what is done; {self.missing} of "
                         f"{self.records_in} records are still to do (manifest.json: "
                         "\"missing\"), and the run that finishes them replaces the files")
        if self.budget_stop:
            pass  # the spend lines said so, with how to go on
        elif self.interrupted:
            lines.append("interrupted: run the same command again to resume")
        elif self.failed:
            lines.append(f"{self.failed} {self.failed_text} (reasons in {self.run_dir / 'failed.jsonl'});"
                         " running the same command again retries them")
            lines += advice_lines(self.repeating)
            if self.exit_code == EXIT_ALL_FAILED:
                lines.append("every record failed: exit code 1")
        return lines


@dataclass
class StageRun:
    """What one pass of a stage did: the executor's result and the models' usage in it."""

    result: RunResult
    usage: dict[str, int]


async def run_stage(stage: StageLike, items: Iterable[Item], journal: Journal, models: Models,
                    options: RunOptions, *, label: str | None = None, total: int | None = None,
                    concurrency: int | None = None,
                    stop_when: StopWhen | None = None) -> StageRun:
    """Run `stage` over `items` into its journal: the one place every command runs a stage.

    Sets the stage up (`setup(models)`, when it has one), shows progress, lets a budget stop
    drain it like a first Ctrl-C, and returns the usage it caused. The executor is
    `options.executor`: local, or Ray (synthcodec.engine_ray: shards of
    `items` on a Ray cluster, the stage set up in each worker); `concurrency` is records in
    flight (default: what the models can take), over the whole run either way. `stop_when`
    (engine.StopWhen) is a cross-record stop condition the executor checks on the driver.
    """
    if total is None and isinstance(items, Sized):
        total = len(items)
    before = models.stats.as_dict()
    counts = Counts(total=total)
    progress = Progress(label or stage.name, counts, models.stats, enabled=options.progress,
                        interval=options.progress_interval, spend=models.spend)
    executor: LocalExecutor | Any
    if options.executor == "ray":
        from synthcodec.engine_ray import RayExecutor

        executor = RayExecutor(models, options, concurrency=concurrency)
    else:
        workers = concurrency or models.concurrency()
        executor = LocalExecutor(
            concurrency=min(workers, max(1, total)) if total is not None else workers)
    models.spend.on_stop[:] = [executor.stop, lambda: progress.note(
        f"{models.spend.stopped}: letting in-flight records finish, starting no new ones")]
    setup = getattr(stage, "setup", None)
    if setup is not None and not getattr(executor, "remote", False):
        await setup(models)
    try:
        result = await executor.run(stage, items, journal, progress=progress, total=total,
                                    stop_when=stop_when)
    finally:
        progress.close()
    after = models.stats.as_dict()
    return StageRun(result, {k: v - before.get(k, 0) for k, v in after.items()
                             if isinstance(v, (int, float))})


@dataclass
class RowStage:
    """A file stage over input rows: the inner stage sees our fields and returns the
    columns it adds; the output row is the user's row + those + META {id, index}."""

    inner: Any
    name: str

    async def setup(self, models: Models) -> None:
        setup = getattr(self.inner, "setup", None)
        if setup is not None:
            await setup(models)

    async def run(self, item: Record) -> Record:
        added = await self.inner.run(item["fields"])
        lineage = added.pop(META, None) or {}  # e.g. a reasoning trace (stages.base)
        return {**item["row"], **added,
                META: {"id": item["id"], "index": item["index"], **lineage}}


def run_file_stage(
    *,
    input_path: str | Path,
    run_dir: str | Path,
    stage: Any,
    fields: list[FieldSpec],
    mapping: Mapping[str, str],
    options: RunOptions,
    adds: tuple[str, ...],
    adds_hint: str = "",
    backends: Mapping[str, Any] | None = None,
    before: Callable[[Models, Path], Awaitable[Mapping[str, Any] | None]] | None = None,
) -> Summary:
    """Validate input, open/resume RUN, run `stage` over every row, publish, write manifest.

    `stage` is a ModelStage (stages/base.py): its `run` gets our fields of a row (`fields`,
    read through `mapping`) and returns the columns `adds` names; each output row is the
    user's input row, untouched, plus those columns plus META = {id, index}, which joins it
    to its input row and to the rejected or failed rows. An input row that already has one
    of those columns is refused up front. Everything (input, models, cache, output path) is
    checked before RUN is touched.
    """
    models = dict(stage.roles)
    config = stage.config()
    scanned = scan_input(input_path, fields, mapping, adds=adds, adds_hint=adds_hint)
    check_models(models, backends, options)
    options.check_cache()
    n_rows = min(scanned.rows, options.limit) if options.limit else scanned.rows
    full_config = {
        "stage": stage.name,
        "input": str(Path(input_path).resolve()),
        "input_sha256": scanned.sha256,
        "limit": options.limit,
        "fields": dict(mapping),
        "models": shown_models(models),
        **config,
    }
    run = RunDir(run_dir).open(full_config, overwrite=options.overwrite)
    try:
        journal = run.journal(stage.name)

        def items() -> Iterator[Item]:
            # The step sees our fields; the row they came from rides along for the output.
            for idx, (line, row) in enumerate(iter_rows(input_path)):
                if options.limit is not None and idx >= options.limit:
                    return
                ours = extract(input_path, line, row, fields, mapping)
                rid = record_id(idx, row)
                yield Item(rid, idx, {"fields": ours, "row": row, "id": rid, "index": idx}, row)

        started = time.monotonic()
        opened = Models.open(models, options, backends, spent_before=run.usage_total(),
                             run_dir=run.path)

        extra: dict[str, Any] = {}

        async def main() -> StageRun:
            try:
                if before is not None:
                    extra.update(await before(opened, run.path) or {})
                return await run_stage(RowStage(stage, stage.name), items(), journal, opened,
                                       options, total=n_rows)
            finally:
                await opened.aclose()

        done = run_async(main())
        summary = finish_stage(run, journal, done, opened, options, stage=stage.name,
                               n_rows=n_rows, started=started, config=full_config,
                               input_sha256=scanned.sha256, **extra)
    finally:
        run.close()  # releases the run directory even when the stage raised
    return summary


def finish_stage(run: RunDir, journal: Journal, done: StageRun, models: Models,
                 options: RunOptions, *, stage: str, n_rows: int, started: float,
                 config: Mapping[str, Any], failed_text: str = "records failed",
                 **manifest: Any) -> Summary:
    """The end of every file stage's invocation: check that every input record is kept,
    rejected or failed (unless it stopped early: interrupted, or at its budget) and publish
    the three files, with what is done so far when it stopped early (the manifest then says
    how many records are missing; the run that finishes replaces them); then write the
    manifest (with `manifest`'s extra fields). The summary to print."""
    result, counts = done.result, done.result.counts
    totals = journal.counts()
    outputs: dict[str, int] = {}
    missing = n_rows - (totals[OK] + totals[REJECTED] + totals[FAILED])
    if not result.interrupted and missing:  # the invariant: every record is accounted for
        run.write_manifest(status="incomplete", stage=stage, counts={"input": n_rows, **totals})
        raise RuntimeError(f"{missing} of {n_rows} records are unaccounted "
                           "for; nothing was published (this is a bug: please report it)")
    outputs["output.jsonl"] = run.publish_jsonl("output.jsonl", _flatten(journal.rows(OK)))
    if options.parquet:
        outputs["output.parquet"] = write_parquet(run.path / "output.parquet",
                                                  lambda: _flatten(journal.rows(OK)))
    outputs["rejected.jsonl"] = run.publish_jsonl("rejected.jsonl", journal.rows(REJECTED))
    outputs["failed.jsonl"] = run.publish_jsonl("failed.jsonl", journal.rows(FAILED))
    repeating = repeat_advice(str(meta.get("reason", "")) for meta in (
        row.get(META) or {} for row in journal.rows(FAILED)) if meta.get("repeats"))
    summary = Summary(
        run_dir=run.path, records_in=n_rows, kept=totals[OK], rejected=totals[REJECTED],
        failed=totals[FAILED], resumed=counts.resumed, stats=models.stats,
        seconds=time.monotonic() - started, interrupted=result.interrupted, outputs=outputs,
        repeating=repeating, spend=models.spend, failed_text=failed_text, missing=missing,
        judge_line=(manifest.get("judge_check") or {}).get("line"),
    )
    usage = usage_dict(models)
    run.write_manifest(
        status=("budget" if models.spend.stopped else
                "interrupted" if result.interrupted else "complete"),
        stage=stage,
        config_sha256=hash_value(config),
        counts={"input": n_rows, **totals},
        **({"incomplete": True, "missing": missing} if missing else {}),
        this_invocation={**usage, "seconds": round(summary.seconds, 3),
                         "resumed": counts.resumed},
        usage_total=run.accumulate_usage(usage),
        cost=models.spend.usage_fields(),
        **models.stats.manifest_fields(),  # per-endpoint counts, if several
        outputs=outputs,
        exit_code=summary.exit_code,
        **manifest,
    )
    return summary


def batches_text(stats: Stats) -> str:
    """` in 3 batches` after "requests sent N" when --batch created any."""
    if not stats.batches:
        return ""
    return f" in {stats.batches} batch" + ("es" if stats.batches > 1 else "")


def usage_dict(models: Models) -> dict[str, Any]:
    """Stats for the manifest: `usd` only when every model of the run has a price."""
    usage = models.stats.as_dict()
    if models.spend.priced:
        usage["usd"] = round(usage["usd"], 6)
    else:
        usage.pop("usd", None)
    return usage


def run_async(coro: Any) -> Any:
    """`asyncio.run`, also from inside a running event loop (Jupyter): then on a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _flatten(rows: Iterator[list[Record]]) -> Iterator[Record]:
    for outputs in rows:
        yield from outputs


def print_summary(summary: Summary) -> int:
    """Print the summary; returns the command's exit code."""
    for line in summary.lines():
        print(line, file=sys.stderr)
    return summary.exit_code
