"""The run driver: every command is a list of stage plans, and `run_plans` runs them.

`run_plans(plans, run_dir, config, options)` checks the model specs, prices and cache once,
opens (or resumes) the run directory and the model clients once, then for each plan: the
stage ledger (runs of several stages: RUN/stages.json says whether the stage resumes, is
redone, or needs --overwrite) → its journal → `before` (e.g. the judge pre-check) →
`run_stage` → `finish_stage` (every record accounted for, the stage's files published, the
manifest) → `after` (a pass over the finished stage, e.g. compare's report or generate's
summary); it closes everything and returns a RunSummary. The plans may be a list, or a
function of the open models and run directory that yields them one at a time (generate:
how many pool entries to decode depends on what the earlier plans published). The records
run on one event loop, kept for the whole run; everything else (publishing, the passes,
choosing the next plan) runs outside it, so a pass may itself run plans: the experiment's
steps are passes over sub-runs (`Plan.skip_if_done`).
`run_file_stage` is the one-plan list of "map a stage over an input file". Nothing here
prints: the commands print what the summaries say.

One module although about 600 lines: the run loop, what it publishes, the manifest it writes
and the two summaries it returns (with the one exit-code rule) are one contract that every
command relies on; split apart, each half would have to restate the other's rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.cost import EXIT_BUDGET, Spend
from synthcodec.errors import UserError
from synthcodec.executors import Item, StageLike, StageRun, StopWhen, run_stage
from synthcodec.executors.run import off_event_loop
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
from synthcodec.store import (
    FAILED,
    OK,
    REJECTED,
    Journal,
    RunDir,
    StageLedger,
    hash_value,
)

Say = Callable[[str], None]  # hears a line as it happens (the commands print it)

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
    stage: str = ""  # the plan's name (its journal and ledger entry)
    notes: list[str] = field(default_factory=list)  # what its publishing said (e.g. dedupe)
    missing_text: str | None = None  # e.g. "more pairs are wanted"
    skipped: bool = False  # a pass finished by an earlier run, not run again (skip_if_done)

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

    def line(self) -> str:
        """One line per stage of a run of several (generate): its counts and files."""
        if self.skipped:
            return f"[{self.stage}] done earlier with the same settings and inputs, skipped"
        parts = [f"{self.stage}: ok {self.kept}", f"rejected {self.rejected}",
                 f"failed {self.failed}"] + ([f"resumed {self.resumed}"] if self.resumed else [])
        out = ", ".join(f"{name} ({n})" for name, n in self.outputs.items())
        if not (self.records_in or self.kept or self.rejected or self.failed):  # a pass only
            return (f"{self.stage}: wrote {out}" if out  # (the metadata pool)
                    else f"{self.stage}: done in {self.seconds:.1f}s")  # (an experiment step)
        return " | ".join(parts) + (f" -> {out}" if out else "")

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
            what = self.missing_text or f"of {self.records_in} records are still to do"
            lines.append(f"incomplete: those files hold what is done; {self.missing} {what} "
                         "(manifest.json: \"missing\"), and the run that finishes them "
                         "replaces the files")
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
class Published:
    """What a plan's own publishing wrote: {file name: rows}, and for the manifest the
    counts of its output files when they are not the journal's (generate's loop keeps at
    most n pairs and removes near-duplicates), the records still wanted when it stopped
    early, and lines for the summary."""

    outputs: dict[str, int]
    counts: dict[str, int] | None = None  # {ok, rejected, failed} of the published files
    missing: int | None = None
    notes: list[str] = field(default_factory=list)
    missing_text: str | None = None  # how the summary words what is missing


@dataclass
class Plan:
    """One stage of a run, as the driver runs it.

    A plan without a stage is a pass over files only (generate's metadata pool): no records,
    no journal; its `publish` does the work. In a run with a stage ledger (`run_plans(...,
    ledger=...)`), `settings` and `input_sha` are what the stage's entry in RUN/stages.json
    is checked against: unchanged, it resumes from its journal; a changed input redoes it;
    changed settings redo it with --overwrite and are refused without."""

    stage: StageLike | None  # its `roles` ({role: model spec}) are the models the run opens
    items: Callable[[], Iterable[Item]]  # the stage's records, read when the plan starts
    records: int | None = None  # how many records `items` gives (None: count them)
    name: str | None = None  # its journal and ledger entry (default: the stage's name)
    label: str | None = None  # the progress label (default: its name)
    # records in flight, from the open models (default: what the models take)
    concurrency: Callable[[Models], int] | None = None
    before: Before | None = None  # after the models open, before the stage runs
    # a pass over the finished, published stage (called even when it stopped early: it may
    # check summary.interrupted); what it returns is in RunSummary.passes
    after: Callable[[RunDir, Journal | None, Summary], Any] | None = None
    failed_text: str = "records failed"  # how the summary words failed records
    manifest: Mapping[str, Any] = field(default_factory=dict)  # more fields for its manifest
    # the stage's own files instead of output/rejected/failed, given (run, journal or None,
    # whether it stopped early); such a plan accounts for its records itself
    publish: Callable[[RunDir, Journal | None, bool], Published] | None = None
    stop_when: StopWhen | None = None  # a cross-record stop condition (executors.StopWhen)
    settings: Mapping[str, Any] | None = None  # the ledger entry's settings
    input_sha: str | None = None  # the ledger entry's input hash
    grown: bool = False  # this run appended to the stage's input itself: a changed input
    # hash then keeps the journaled records (generate drawing more of the pool)
    info: Callable[[], Mapping[str, Any]] | None = None  # more for the ledger entry, at the end
    # A pass whose work is costly (the experiment's steps: sub-runs, training): the files it
    # leaves. In a run with a ledger it is skipped (`publish` not called, no manifest, its
    # entry untouched; Summary.skipped) when its entry finished with these settings and
    # input and the files exist; else its entry is begun afresh, "finished" once it ends.
    skip_if_done: Sequence[Path] | None = None

    @property
    def stage_name(self) -> str:
        if self.name:
            return self.name
        if self.stage is None:
            raise ValueError("a plan without a stage needs a name")
        return self.stage.name


@dataclass
class RunSummary:
    """What a run did: one Summary per plan that ran, and what their `after` passes gave."""

    run_dir: Path
    stages: list[Summary]
    passes: dict[str, Any] = field(default_factory=dict)  # plan name -> `after`'s result
    lines: list[str] = field(default_factory=list)  # what the run ends with (generate's report)
    report: dict[str, Any] | None = None  # e.g. generate's summary.json

    @property
    def exit_code(self) -> int:
        """The first non-zero exit code of its stages, else 0 (one rule for every command)."""
        return next((s.exit_code for s in self.stages if s.exit_code), EXIT_OK)

    @property
    def last(self) -> Summary | None:
        return self.stages[-1] if self.stages else None

    @property
    def stopped(self) -> bool:
        """It ended early: interrupted or at its budget (the files hold what is done)."""
        return any(s.interrupted or s.budget_stop for s in self.stages)


PlanSource = Sequence[Plan] | Callable[[Models, RunDir], Iterable[Plan]]


def run_plans(plans: PlanSource, run_dir: str | Path, config: Mapping[str, Any],
              options: RunOptions, *, backends: Mapping[str, Any] | None = None,
              specs: Mapping[str, str] | None = None,
              ledger: Mapping[str, Any] | None = None, say: Say | None = None,
              manifest: Mapping[str, Any] | None = None) -> RunSummary:
    """Run `plans` in order into `run_dir` (resuming it; `config` is what a resume is checked
    against). The model specs, prices and cache are checked before the run directory is
    touched. A stage that stops early (interrupted, or at its budget) ends the run there.
    `backends` replaces models by role (e.g. a FakeBackend). `specs`: the run's models, when
    `plans` is a function (else the plans' stages name them). `ledger`: the run has several
    stages, each checked against RUN/stages.json (these run-level notes are saved there
    first); `say` hears why a stage is redone and, in such a run, each stage's line as it
    ends. `manifest`: run-level fields for every manifest (e.g. the input's hash)."""
    if specs is None:
        if callable(plans):
            raise TypeError("give the run's model specs when the plans are a function")
        # ModelStages name their models in `roles`; a plain executors.Stage calls none.
        specs = {role: spec for plan in plans
                 for role, spec in getattr(plan.stage, "roles", {}).items()}
    check_models(specs, backends, options)
    options.check_cache()
    run = RunDir(run_dir).open(dict(config), overwrite=options.overwrite)
    try:
        started = time.monotonic()
        stages = None
        if ledger is not None:
            stages = run.ledger
            stages.state.update(ledger)
            stages.save()
        spent_before = run.usage_total()
        models = Models.open(specs, options, backends, spent_before=spent_before,
                             run_dir=run.path)
        driver = _Driver(run, models, config, options, stages, spent_before,
                         say or (lambda line: None), dict(manifest or {}))
        return off_event_loop(lambda: driver.drive(plans, started))
    finally:
        run.close()  # releases the run directory even when a stage raised


@dataclass
class _Driver:
    run: RunDir
    models: Models
    config: Mapping[str, Any]
    options: RunOptions
    ledger: StageLedger | None
    spent_before: Mapping[str, Any]
    say: Say
    # what `before` steps returned: run-level manifest fields (e.g. the judge check), in
    # every manifest written after them
    extra: dict[str, Any] = field(default_factory=dict)

    def drive(self, plans: PlanSource, started: float) -> RunSummary:
        summary = RunSummary(self.run.path, [])
        with asyncio.Runner() as loop:  # one event loop for the run's models and records
            try:
                source = plans(self.models, self.run) if callable(plans) else plans
                for plan in source:
                    stage = self.run_plan(loop, plan, started)
                    summary.stages.append(stage)
                    if self.ledger is not None:  # several stages: each says what it did
                        for line in [stage.line(), *stage.notes]:
                            self.say(line)
                        self.save_cost()
                    if plan.after is not None:
                        journal = self.run.journal(plan.stage_name) if plan.stage else None
                        summary.passes[plan.stage_name] = plan.after(self.run, journal, stage)
                    if stage.interrupted or stage.budget_stop:
                        break
                    started = time.monotonic()
            finally:
                self.save_cost()
                loop.run(self.models.aclose())
        return summary

    def run_plan(self, loop: asyncio.Runner, plan: Plan, started: float) -> Summary:
        name = plan.stage_name
        if self.done_earlier(plan):
            return Summary(self.run.path, 0, 0, 0, 0, 0, self.models.stats, 0.0, False,
                           stage=name, skipped=True)
        journal = self.run.journal(name) if plan.stage is not None else None
        if self.ledger is not None and plan.settings is not None:
            self.begin(name, dict(plan.settings), plan.input_sha, journal, plan.grown,
                       fresh=plan.skip_if_done is not None)
        if plan.before is not None:
            self.extra.update(loop.run(plan.before(self.models, self.run.path)) or {})
        before = self.models.stats.as_dict()
        if plan.stage is not None and journal is not None:
            items = plan.items()
            records = plan.records
            if records is None:
                items = list(items)
                records = len(items)
            done = loop.run(run_stage(
                plan.stage, items, journal, self.models, self.options, label=plan.label or name,
                total=records, stop_when=plan.stop_when,
                concurrency=plan.concurrency(self.models) if plan.concurrency else None))
        else:
            done, records = None, 0
        stage = finish_stage(self.run, journal, done, self.models, self.options, stage=name,
                             n_rows=records, started=started, config=self.config,
                             failed_text=plan.failed_text, publish=plan.publish,
                             usage_before=self.spent_before,
                             **{**({"input_sha256": plan.input_sha} if plan.input_sha else {}),
                                **plan.manifest, **self.extra})
        if self.ledger is not None and plan.settings is not None:
            after = self.models.stats.as_dict()
            usage = {k: v - before.get(k, 0) for k, v in after.items()
                     if isinstance(v, (int, float)) and v != before.get(k, 0)}
            finished = ({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                        if plan.skip_if_done is not None else {})
            self.ledger.finish(name, stats=usage, **(plan.info() if plan.info else {}),
                               **finished)
        return stage

    def done_earlier(self, plan: Plan) -> bool:
        """A costly pass finished by an earlier run with these settings and input, whose
        files are all there (Plan.skip_if_done)."""
        if self.ledger is None or plan.settings is None or plan.skip_if_done is None:
            return False
        entry = self.ledger.entry(plan.stage_name)
        return bool(entry.get("finished")) and all(p.exists() for p in plan.skip_if_done) \
            and self.ledger.change(plan.stage_name, dict(plan.settings), plan.input_sha) is None

    def begin(self, name: str, settings: dict[str, Any], input_sha: str | None,
              journal: Journal | None, grown: bool, fresh: bool = False) -> None:
        """The one resume rule of a run of several stages (store.StageLedger); `fresh`: its
        entry starts over (a costly pass, unfinished until it ends)."""
        assert self.ledger is not None
        change = self.ledger.change(name, settings, input_sha)
        if fresh and change is None and self.ledger.entry(name):
            self.say(f"{name}: did not finish last time (or its files are gone): "
                     "running it again")
        if grown and change is not None and change[0] == "input":
            change = None
        if change is not None and change[0] == "settings":
            changed = ", ".join(change[1])
            if not self.options.overwrite:
                raise UserError(
                    f"{name} already ran in {self.run.path} with other settings (changed: "
                    f"{changed}). Add --overwrite to redo it with the new ones "
                    "(cached requests are reused), or use another -o directory.")
            self.say(f"{name}: settings changed ({changed}): redoing it")
        elif change is not None:
            self.say(f"{name}: its input changed since it last ran: redoing it "
                     "(unchanged records come back from the request cache)")
        if change is not None and journal is not None:
            journal.clear()
        self.ledger.start(name, settings, input_sha, fresh=fresh)

    def save_cost(self) -> None:
        """What this invocation's money lines said, for generate's summary (codeclm/report)."""
        if self.ledger is not None:
            spend = self.models.spend
            self.ledger.state["_cost"] = {"priced": spend.priced, "price_unknown": spend.unpriced,
                                          "stopped": spend.stopped, "lines": spend.lines()}
            self.ledger.save()


def finish_stage(run: RunDir, journal: Journal | None, done: StageRun | None, models: Models,
                 options: RunOptions, *, stage: str, n_rows: int, started: float,
                 config: Mapping[str, Any], failed_text: str = "records failed",
                 publish: Callable[[RunDir, Journal | None, bool], Published] | None = None,
                 usage_before: Mapping[str, Any] | None = None,
                 **manifest: Any) -> Summary:
    """The end of every stage's invocation: check that every input record is kept, rejected
    or failed (unless it stopped early: interrupted, or at its budget) and publish the three
    files, with what is done so far when it stopped early (the manifest then says how many
    records are missing; the run that finishes replaces them); or, with `publish`, the
    stage's own files. Then write the manifest (with `manifest`'s extra fields). The stage's
    summary."""
    interrupted = bool(done and done.result.interrupted)
    resumed = done.result.counts.resumed if done else 0
    totals = journal.counts() if journal is not None else {OK: 0, REJECTED: 0, FAILED: 0}
    missing = n_rows - (totals[OK] + totals[REJECTED] + totals[FAILED])
    notes: list[str] = []
    if publish is not None:
        published = publish(run, journal, interrupted or bool(models.spend.stopped))
        outputs, notes = published.outputs, published.notes
        counts = {OK: totals[OK], REJECTED: totals[REJECTED], FAILED: totals[FAILED],
                  **(published.counts or {})}
        missing = published.missing or 0
        n_in = n_rows if published.counts is None else sum(counts.values())
    else:
        if journal is None:
            raise ValueError("a plan without a stage publishes its own files")
        if not interrupted and missing:  # the invariant: every record is accounted for
            run.write_manifest(status="incomplete", stage=stage,
                               counts={"input": n_rows, **totals})
            raise RuntimeError(f"{missing} of {n_rows} records are unaccounted "
                               "for; nothing was published (this is a bug: please report it)")
        outputs = publish_three(run, journal, options)
        counts, n_in = dict(totals), n_rows
    repeating = repeat_advice(str(meta.get("reason", "")) for meta in (
        row.get(META) or {} for row in journal.rows(FAILED)) if meta.get("repeats")) \
        if journal is not None else {}
    summary = Summary(
        run_dir=run.path, records_in=n_in, kept=counts[OK], rejected=counts[REJECTED],
        failed=counts[FAILED], resumed=resumed, stats=models.stats,
        seconds=time.monotonic() - started, interrupted=interrupted, outputs=outputs,
        repeating=repeating, spend=models.spend, failed_text=failed_text, missing=missing,
        judge_line=(manifest.get("judge_check") or {}).get("line"), stage=stage, notes=notes,
        missing_text=published.missing_text if publish is not None else None,
    )
    usage = usage_dict(models)
    before = run.usage_total() if usage_before is None else usage_before
    total = {k: before.get(k, 0) + usage.get(k, 0) for k in set(before) | set(usage)}
    if isinstance(total.get("usd"), float):
        total["usd"] = round(total["usd"], 6)
    write_run_manifest(
        run, models,
        # complete: this invocation published the run's output (a stage of several that
        # comes before the output, e.g. encode, leaves the run incomplete)
        status=("budget" if models.spend.stopped else "interrupted" if interrupted else
                "complete" if "output.jsonl" in outputs else "incomplete"),
        stage=stage, config_sha256=hash_value(config), counts={"input": n_in, **counts},
        missing=missing, seconds=summary.seconds, resumed=resumed, outputs=outputs,
        exit_code=summary.exit_code, usage_total=total, **manifest)
    return summary


def publish_three(run: RunDir, journal: Journal, options: RunOptions) -> dict[str, int]:
    """The run layout of every command (docs/run-layout.md): output.jsonl (+ .parquet with
    --parquet), rejected.jsonl and failed.jsonl from the stage's journal."""
    outputs: dict[str, int] = {}
    outputs["output.jsonl"] = run.publish_jsonl("output.jsonl", _flatten(journal.rows(OK)))
    if options.parquet:
        outputs["output.parquet"] = write_parquet(run.path / "output.parquet",
                                                  lambda: _flatten(journal.rows(OK)))
    outputs["rejected.jsonl"] = run.publish_jsonl("rejected.jsonl", journal.rows(REJECTED))
    outputs["failed.jsonl"] = run.publish_jsonl("failed.jsonl", journal.rows(FAILED))
    return outputs


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
