"""The run driver: every file command (rate, complete, answer, score) and `compare` is a
list of stage plans, and `run_plans` runs them.

`run_plans(plans, run_dir, config, options)` checks the model specs, prices and cache once,
opens (or resumes) the run directory and the model clients once, then for each plan: its
journal → `before` (e.g. the judge pre-check) → `run_stage` → `finish_stage` (every record
accounted for, output/rejected/failed published, the manifest) → `after` (a pass over the
finished stage, e.g. compare's report); it closes everything and returns a RunSummary.
`run_file_stage` is the one-plan list of "map a stage over an input file". Nothing here
prints: the commands print what the summaries say.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.cost import EXIT_BUDGET, Spend
from synthcodec.executors import Item, StageLike, StageRun, run_async, run_stage
from synthcodec.failures import advice_lines, repeat_advice
from synthcodec.io import FieldSpec, extract, iter_rows, scan_input, write_parquet
from synthcodec.llm.client import Stats
from synthcodec.records import META, Record, record_id
from synthcodec.session import (
    EXIT_ALL_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Models,
    RunOptions,
    check_models,
    shown_models,
)
from synthcodec.store import FAILED, OK, REJECTED, Journal, RunDir, hash_value

# What a plan's `before` step is: given the open models and the run directory, it may return
# fields for the stage's manifest (e.g. {"judge_check": ...}, whose line the summary shows).
Before = Callable[[Models, Path], Awaitable[Mapping[str, Any] | None]]


@dataclass
class Summary:
    """What one stage of a run did (one plan): counts, usage, files written, exit code."""

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
        """The summary a command prints (to stderr), the judge check's verdict first."""
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
class Plan:
    """One stage of a run, as the driver runs it."""

    stage: StageLike  # its `roles` ({role: model spec}) are the models the run opens
    items: Callable[[], Iterable[Item]]  # the stage's records, read when the plan starts
    records: int  # how many records `items` gives
    label: str | None = None  # the progress label (default: the stage's name)
    # records in flight, from the open models (default: what the models take)
    concurrency: Callable[[Models], int] | None = None
    before: Before | None = None  # after the models open, before the stage runs
    # a pass over the finished, published stage (called even when it stopped early: it may
    # check summary.interrupted); what it returns is in RunSummary.passes
    after: Callable[[RunDir, Journal, Summary], Any] | None = None
    failed_text: str = "records failed"  # how the summary words failed records
    manifest: Mapping[str, Any] = field(default_factory=dict)  # more fields for its manifest


@dataclass
class RunSummary:
    """What a run did: one Summary per plan that ran, and what their `after` passes gave."""

    run_dir: Path
    stages: list[Summary]
    passes: dict[str, Any] = field(default_factory=dict)  # stage name -> `after`'s result

    @property
    def exit_code(self) -> int:
        """The first non-zero exit code of its stages, else 0 (one rule for every command)."""
        return next((s.exit_code for s in self.stages if s.exit_code), EXIT_OK)


def run_plans(plans: Sequence[Plan], run_dir: str | Path, config: Mapping[str, Any],
              options: RunOptions, *, backends: Mapping[str, Any] | None = None) -> RunSummary:
    """Run `plans` in order into `run_dir` (resuming it; `config` is what a resume is checked
    against). The model specs, prices and cache are checked before the run directory is
    touched. A stage that stops early (interrupted, or at its budget) ends the run there.
    `backends` replaces models by role (e.g. a FakeBackend). Every plan publishes the run's
    output/rejected/failed files and manifest.json: with several plans the last one's stay
    (the commands here are one plan; several stages need names of their own first)."""
    # ModelStages name their models in `roles`; a plain engine.Stage calls none.
    specs = {role: spec for plan in plans
             for role, spec in getattr(plan.stage, "roles", {}).items()}
    check_models(specs, backends, options)
    options.check_cache()
    run = RunDir(run_dir).open(dict(config), overwrite=options.overwrite)
    try:
        started = time.monotonic()
        models = Models.open(specs, options, backends, spent_before=run.usage_total(),
                             run_dir=run.path)
        return run_async(_run(plans, run, models, config, options, started))
    finally:
        run.close()  # releases the run directory even when a stage raised


async def _run(plans: Sequence[Plan], run: RunDir, models: Models, config: Mapping[str, Any],
               options: RunOptions, started: float) -> RunSummary:
    summary = RunSummary(run.path, [])
    try:
        for plan in plans:
            journal = run.journal(plan.stage.name)
            extra = dict(await plan.before(models, run.path) or {}) if plan.before else {}
            done = await run_stage(
                plan.stage, plan.items(), journal, models, options, label=plan.label,
                total=plan.records,
                concurrency=plan.concurrency(models) if plan.concurrency else None)
            stage = finish_stage(run, journal, done, models, options, stage=plan.stage.name,
                                 n_rows=plan.records, started=started, config=config,
                                 failed_text=plan.failed_text, **plan.manifest, **extra)
            summary.stages.append(stage)
            if plan.after is not None:
                summary.passes[plan.stage.name] = plan.after(run, journal, stage)
            if stage.interrupted or stage.budget_stop:
                break
            started = time.monotonic()
    finally:
        await models.aclose()
    return summary


def finish_stage(run: RunDir, journal: Journal, done: StageRun, models: Models,
                 options: RunOptions, *, stage: str, n_rows: int, started: float,
                 config: Mapping[str, Any], failed_text: str = "records failed",
                 **manifest: Any) -> Summary:
    """The end of every stage's invocation: check that every input record is kept, rejected
    or failed (unless it stopped early: interrupted, or at its budget) and publish the three
    files, with what is done so far when it stopped early (the manifest then says how many
    records are missing; the run that finishes replaces them); then write the manifest
    (with `manifest`'s extra fields). The stage's summary."""
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
    write_run_manifest(
        run, models,
        status=("budget" if models.spend.stopped else
                "interrupted" if result.interrupted else "complete"),
        stage=stage, config_sha256=hash_value(config), counts={"input": n_rows, **totals},
        missing=missing, seconds=summary.seconds, resumed=counts.resumed, outputs=outputs,
        exit_code=summary.exit_code, **manifest)
    return summary


def write_run_manifest(run: RunDir, models: Models, *, status: str, stage: str | None,
                       config_sha256: str, counts: Mapping[str, int], missing: int,
                       seconds: float, resumed: int, outputs: Mapping[str, int],
                       exit_code: int, input_sha256: str | None = None,
                       usage_total: Mapping[str, Any] | None = None,
                       **extra: Any) -> dict[str, Any]:
    """RUN/manifest.json at the end of an invocation, one shape for every command
    (docs/run-layout.md): `counts` {input, ok, rejected, failed}; `missing` (records not
    done yet, stopped early) adds `incomplete` and `missing`; this invocation's usage (from
    `models`, which may be closed) and the run's (`usage_total`, default: the earlier
    invocations' from the manifest plus this one's); the cost, per-endpoint counts if a model
    has several, the files written, the input's hash (commands that read an input file) and
    `extra` (e.g. `judge_check`)."""
    usage = usage_dict(models)
    return run.write_manifest(
        status=status,
        stage=stage,
        config_sha256=config_sha256,
        counts=dict(counts),
        **({"incomplete": True, "missing": missing} if missing else {}),
        this_invocation={**usage, "seconds": round(seconds, 3), "resumed": resumed},
        usage_total=dict(run.accumulate_usage(usage) if usage_total is None else usage_total),
        cost=models.spend.usage_fields(),
        **models.stats.manifest_fields(),  # per-endpoint counts, if several
        outputs=dict(outputs),
        exit_code=exit_code,
        **({"input_sha256": input_sha256} if input_sha256 is not None else {}),
        **extra,
    )


# --------------------------------------------------------------- a stage over an input file


@dataclass
class RowStage:
    """A file stage over input rows: the inner stage sees our fields and returns the
    columns it adds; the output row is the user's row + those + META {id, index}."""

    inner: Any
    name: str

    @property
    def roles(self) -> dict[str, str]:
        return dict(self.inner.roles)

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
    before: Before | None = None,
) -> Summary:
    """Validate input, open/resume RUN, run `stage` over every row, publish, write manifest.

    `stage` is a ModelStage (stages/base.py): its `run` gets our fields of a row (`fields`,
    read through `mapping`) and returns the columns `adds` names; each output row is the
    user's input row, untouched, plus those columns plus META = {id, index}, which joins it
    to its input row and to the rejected or failed rows. An input row that already has one
    of those columns is refused up front. Everything (input, models, cache, output path) is
    checked before RUN is touched. A one-plan run of `run_plans`.
    """
    stage_config = stage.config()
    scanned = scan_input(input_path, fields, mapping, adds=adds, adds_hint=adds_hint)
    n_rows = min(scanned.rows, options.limit) if options.limit else scanned.rows
    config = {
        "stage": stage.name,
        "input": str(Path(input_path).resolve()),
        "input_sha256": scanned.sha256,
        "limit": options.limit,
        "fields": dict(mapping),
        "models": shown_models(dict(stage.roles)),
        **stage_config,
    }

    def items() -> Iterator[Item]:
        # The stage sees our fields; the row they came from rides along for the output.
        for idx, (line, row) in enumerate(iter_rows(input_path)):
            if options.limit is not None and idx >= options.limit:
                return
            ours = extract(input_path, line, row, fields, mapping)
            rid = record_id(idx, row)
            yield Item(rid, idx, {"fields": ours, "row": row, "id": rid, "index": idx}, row)

    plan = Plan(RowStage(stage, stage.name), items, n_rows, before=before,
                manifest={"input_sha256": scanned.sha256})
    return run_plans([plan], run_dir, config, options, backends=backends).stages[0]


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


def _flatten(rows: Iterator[list[Record]]) -> Iterator[Record]:
    for outputs in rows:
        yield from outputs
