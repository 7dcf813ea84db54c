"""`generate` and the CodecLM stage commands, as plans for the one run driver.

`generate` is `[encode, metadata pool (pass), decode + dedupe (pass), rubrics, loop +
collect (pass)]`, yielded one plan at a time (how many pool entries to decode depends on
the pool the earlier plans built; a loop that runs dry draws more). Each stage command
(`encode`, `metadata`, `decode`, `rubrics`, `respond`, `contrast`, `improve`) runs one plan
of the same kind into the same RUN/, through the same driver: one resume rule (stages.json),
one manifest, one exit-code rule. Nothing here prints: `say` hears the lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from synthcodec.codeclm.config import CodecConfig, per_metadata_for
from synthcodec.codeclm.files import OUTPUT, RUN_KIND, SEED_FIELDS, resolve_models
from synthcodec.codeclm.loop import EXHAUSTED, SHORT, LoopState, loop_plan
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.report import (
    SAME_MODEL_WARNING,
    build_summary,
    summary_lines,
    write_summary,
)
from synthcodec.codeclm.stages import (
    decode_plan,
    encode_plan,
    load_metadata,
    metadata_plan,
    rubrics_plan,
)
from synthcodec.codeclm.steps import StepContext, step_context
from synthcodec.driver import Before, Plan, RunSummary, run_plans
from synthcodec.io import scan_input
from synthcodec.judging.check import (
    PRE_CHECK_PROBES,
    Say,
    manifest_entry,
    packaged_samples,
    pre_check,
    silent,
)
from synthcodec.judging.check.probes import samples_from_rows
from synthcodec.llm import redact_spec
from synthcodec.session import Models, RunOptions
from synthcodec.store import RunDir, check_writable_dir


def same_model_warning(specs: Mapping[str, str]) -> list[str]:
    """The warning line when the strong and the target model are one model, else none."""
    if specs.get("strong") and specs.get("strong") == specs.get("target"):
        return ["WARNING: " + SAME_MODEL_WARNING.format(model=redact_spec(specs["strong"]))]
    return []


def generate(*, seeds: str, run_dir: str | Path, strong: str, target: str, n: int,
             cfg: CodecConfig, options: RunOptions, mapping: Mapping[str, str] | None = None,
             oversample: float = 2.0,
             prompts_dir: str | None = None, export_format: str | None = None,
             judge_check: int = PRE_CHECK_PROBES,
             backends: Mapping[str, Any] | None = None, say: Say = silent) -> RunSummary:
    """encode -> metadata -> decode -> rubrics -> loop, until n pairs are kept or none are left.

    First a judge check of the strong model as judge, `judge_check` probes per kind (0:
    none), on the seeds' responses if they have some, else on packaged ones. `say` hears
    every line of the run as it happens (each stage's, the summary, the cost); nothing is
    printed here. The result's `lines` are what the run ends with, its `report` the
    generation summary (summary.json) when it finished."""
    prompts = Prompts.load(prompts_dir)
    mapping = dict(mapping or {})
    # Everything is checked before the run directory is created or touched.
    scanned = scan_input(seeds, SEED_FIELDS, mapping)
    check_writable_dir(run_dir, what="run directory")
    specs, note = resolve_models(Path(run_dir), strong=strong, target=target)
    for line in same_model_warning(specs):
        say(line)
    ending: dict[str, Any] = {}

    def plans(models: Models, run: RunDir) -> Iterator[Plan]:
        ctx = step_context(models, cfg, prompts)
        encode = encode_plan(ctx, models, seeds, mapping, options.limit)
        if judge_check > 0:
            encode.before = judge_before(run, ctx, seeds, mapping, judge_check, strong, say)
        yield encode
        yield metadata_plan(run, cfg, options.overwrite)
        pool = len(load_metadata(run.path))
        k = cfg.per_metadata or per_metadata_for(n, pool, oversample)
        ctx = step_context(models, replace(cfg, per_metadata=k), prompts)
        # Only the pool entries n pairs need (n x oversample base instructions, k per
        # entry) are decoded and given rubrics; more are drawn only if the loop runs dry.
        draws = [min(pool, math.ceil(n * oversample / k))]
        while True:
            yield decode_plan(ctx, models, run.path, draws)
            yield rubrics_plan(ctx, models, run.path, draws)
            state = LoopState()
            yield loop_plan(ctx, models, run, n, state, grown=len(draws) > 1)
            while state.stop == SHORT:  # n reached in completion order, fewer in input order
                yield loop_plan(ctx, models, run, n, state, grown=len(draws) > 1)
            # Failed records (a model that cannot answer) are retried by a re-run, not by
            # drawing more entries for the same model to fail on.
            if state.stop != EXHAUSTED or draws[-1] >= pool or state.failed:
                break
            draws.append(min(pool, 2 * draws[-1]))
            say(f"{state.kept} of {n} pairs kept from {draws[-2]} pool entries: drawing "
                f"{draws[-1] - draws[-2]} more of the {pool}")
        # The run finished (a stopped one ends at its stage): its report, in the open run.
        summary = build_summary(run.path, strong=strong, target=target, theta=cfg.theta,
                                requested=n, stop=state.stop)
        lines = summary_lines(summary) + cost_lines(run) + write_summary(run.path, summary)
        if export_format:
            lines.append(export_pairs(run.path, export_format))
        ending.update(report=summary, lines=lines)

    result = run_plans(plans, run_dir, RUN_KIND, options, backends=backends, specs=specs,
                       ledger=note, say=say, manifest={"input_sha256": scanned.sha256})
    return _ended(result, ending, say)


def _ended(result: RunSummary, ending: Mapping[str, Any], say: Say) -> RunSummary:
    """The run's closing lines (said too): its report when it finished, else what the
    stage it stopped in says (what is kept so far, how to go on)."""
    if "lines" in ending:
        result.report, result.lines = ending["report"], list(ending["lines"])
    elif result.last is not None:
        result.lines = [line for line in result.last.lines()
                        if not line.startswith(("records in ", "requests sent ", "wrote "))]
    for line in result.lines:
        say(line)
    return result


def cost_lines(run: RunDir) -> list[str]:
    """This invocation's money lines (the driver keeps them in stages.json)."""
    return list((run.ledger.state.get("_cost") or {}).get("lines") or [])


def judge_before(run: RunDir, ctx: StepContext, seeds: str, mapping: Mapping[str, str],
                 per_kind: int, strong: str, say: Say) -> Before:
    """generate's judge check of the strong model as judge, before encode: its usage is the
    run's like any stage's (the totals, the cost, the budget), under "judge_check"."""

    async def check(models: Models, run_path: Path) -> Mapping[str, Any] | None:
        samples, data = probe_samples(seeds, mapping)
        before = models.stats.as_dict()
        card = await pre_check(samples, per_kind, run_path, judge=redact_spec(strong),
                               data=data, client=ctx.strong, settings=ctx.judge, say=say)
        after = models.stats.as_dict()
        run.ledger.finish("judge_check", stats={
            k: v - before.get(k, 0) for k, v in after.items()
            if isinstance(v, (int, float)) and v != before.get(k, 0)})
        return manifest_entry(card)

    return check


def probe_samples(seeds: str, mapping: Mapping[str, str]) -> tuple[list[Any], str]:
    """What `generate`'s judge check probes: the seeds' own responses (a `response` or
    `output` column, or the one --field response= names), else a few packaged answers."""
    from synthcodec.io import iter_rows

    first = next(iter_rows(seeds), (0, {}))[1]
    column = mapping.get("response") or next((c for c in ("response", "output") if c in first),
                                             None)
    if column and isinstance(first.get(column), str):
        rows = samples_from_rows(seeds, {**mapping, "response": column}, max_rows=500)
        return rows, f"the responses of {seeds}"
    return packaged_samples(), "synthcodec's packaged probe answers (the seeds have none)"


EXPORT_NAMES = {"jsonl": "pairs_export.jsonl", "alpaca": "pairs_alpaca.json",
                "openai": "pairs_openai.jsonl", "sharegpt": "pairs_sharegpt.json",
                "hf": "pairs_hf"}


def export_pairs(path: Path, fmt: str) -> str:
    """Write the kept pairs (output.jsonl) in a fine-tuning format beside them."""
    from synthcodec.formats import export
    from synthcodec.io import iter_rows

    target = path / EXPORT_NAMES[fmt]
    n = export(fmt, target, iter_rows(path / OUTPUT), {}, source=path / OUTPUT)
    return f"wrote {target} ({n} pairs, {fmt})"


# The plan of one stage command, from the live context and the open run.
PlanOf = Callable[[StepContext, Models, RunDir], Plan]


def run_stage_command(plan_of: PlanOf, *, run_dir: str | Path, roles: Mapping[str, str | None],
                      cfg: CodecConfig, options: RunOptions, prompts_dir: str | None = None,
                      backends: Mapping[str, Any] | None = None,
                      say: Say = silent) -> RunSummary:
    """The body of every CodecLM stage command (encode, decode, rubrics, and the rounds by
    hand): one plan through the driver into RUN/, with the models given or those the run
    recorded; a stage that published output.jsonl (contrast) also writes the summary.
    The result's `lines` are what it ends with (`say` hears the lines that come before)."""
    prompts = Prompts.load(prompts_dir)
    specs, note = resolve_models(Path(run_dir), **roles)
    if "target" in specs:
        for line in same_model_warning(specs):
            say(line)
    ending: dict[str, Any] = {}

    def plans(models: Models, run: RunDir) -> Iterator[Plan]:
        plan = plan_of(step_context(models, cfg, prompts), models, run)
        yield plan
        ending["lines"] = cost_lines(run)
        if (run.path / OUTPUT).exists() and plan.stage_name.startswith("contrast"):
            summary = build_summary(run.path, strong=specs["strong"], target=specs["target"],
                                    theta=cfg.theta, requested=None, stop=EXHAUSTED)
            ending["report"] = summary
            ending["lines"] += summary_lines(summary) + write_summary(run.path, summary)
        else:
            ending["report"] = None

    result = run_plans(plans, run_dir, RUN_KIND, options, backends=backends, specs=specs,
                       ledger=note, say=say)
    return _ended(result, ending, say)


def run_metadata_command(*, run_dir: str | Path, cfg: CodecConfig, overwrite: bool,
                         say: Say = silent) -> RunSummary:
    """`synthcodec metadata`: the pool pass alone (no model)."""
    options = RunOptions(progress=False, overwrite=overwrite, no_cache=True)
    return run_plans(lambda models, run: [metadata_plan(run, cfg, overwrite)], run_dir,
                     RUN_KIND, options, specs={}, ledger={}, say=say)
