"""Open models inside one event loop and run CodecLM stages; `generate` chains all of them."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from synthcodec.codeclm.config import CodecConfig, per_metadata_for
from synthcodec.codeclm.loop import EXHAUSTED, INTERRUPTED, LoopResult, loop_stage
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.report import (
    SAME_MODEL_WARNING,
    build_summary,
    summary_lines,
    write_summary,
)
from synthcodec.codeclm.stages import (
    FAILED_FILE,
    OUTPUT,
    REJECTED_FILE,
    SEED_FIELDS,
    StageResult,
    decode_stage,
    encode_stage,
    load_metadata,
    metadata_stage,
    rubrics_stage,
)
from synthcodec.codeclm.steps import Ctx, make_ctx
from synthcodec.codeclm.workspace import COST_KEY, MODELS_KEY, Workspace
from synthcodec.cost import EXIT_BUDGET
from synthcodec.driver import write_run_manifest
from synthcodec.errors import UserError
from synthcodec.executors import run_async
from synthcodec.io import scan_input
from synthcodec.judgecheck import (
    PRE_CHECK_PROBES,
    Say,
    manifest_entry,
    packaged_samples,
    pre_check,
    silent,
)
from synthcodec.judgecheck.probes import samples_from_rows
from synthcodec.llm import redact_spec
from synthcodec.session import Models, RunOptions, check_models
from synthcodec.store import FAILED, OK, REJECTED, check_writable_dir, hash_value

T = TypeVar("T")


def resolve_models(ws: Workspace, **given: str | None) -> dict[str, str]:
    """Model specs for this command: given on the command line, else those the run used."""
    known: dict[str, str] = dict(ws.state.get(MODELS_KEY, {}))
    out: dict[str, str] = {}
    for role, spec in given.items():
        spec = spec or known.get(role)
        if not spec:
            raise UserError(f"no --{role} model: give --{role} MODEL (no earlier stage of "
                            f"{ws.path} recorded one)")
        if spec != redact_spec(spec) and not given.get(role):
            raise UserError(f"give --{role} again: the credentials in its URL are not stored "
                            f"in {ws.path}")
        out[role] = spec
    # Stored without credentials: a later stage reuses the spec, never a secret.
    ws.state[MODELS_KEY] = {**known, **{role: redact_spec(spec) for role, spec in out.items()}}
    ws.save()
    return out


def run_with_models(specs: Mapping[str, str], options: RunOptions,
                    body: Callable[[Models], Awaitable[T]],
                    backends: Mapping[str, Any] | None = None,
                    ws: Workspace | None = None) -> T:
    """Open the clients inside the event loop that uses them, run `body`, close them.

    With `ws`, the budget counts what every earlier stage and invocation of the run spent,
    and the money lines (and a budget stop) are kept in stages.json for `exit_code`; the
    models stay in `ws.models` for the manifest."""
    options.check_prices(specs)
    spend: list[Any] = []

    async def main() -> T:
        models = Models.open(specs, options, backends,
                             spent_before=ws.total_stats() if ws is not None else None,
                             run_dir=ws.path if ws is not None else None)
        spend.append(models.spend)
        if ws is not None:
            ws.models = models
        try:
            return await body(models)
        finally:
            await models.aclose()

    try:
        return run_async(main())
    finally:
        if ws is not None and spend:
            ws.state[COST_KEY] = {"priced": spend[0].priced, "price_unknown": spend[0].unpriced,
                                  "stopped": spend[0].stopped, "lines": spend[0].lines()}
            ws.save()


def cost_lines(ws: Workspace) -> list[str]:
    return list((ws.state.get(COST_KEY) or {}).get("lines") or [])


def exit_code(ws: Workspace, interrupted: bool) -> int:
    """4 when this invocation stopped at its budget, 130 when interrupted, else 0."""
    if (ws.state.get(COST_KEY) or {}).get("stopped"):
        return EXIT_BUDGET
    return 130 if interrupted else 0


def write_manifest(ws: Workspace, result: StageResult | None, code: int, *, started: float,
                   resumed: int, input_sha256: str | None = None,
                   judge_check: Mapping[str, Any] | None = None,
                   missing: int | None = None) -> None:
    """RUN/manifest.json at the end of every invocation, in the shape of every run's
    (driver.write_run_manifest, docs/run-layout.md): `complete` once this invocation
    published the run's three files (counts: their rows, `ok` the pairs kept), `budget` or
    `interrupted` when it stopped early, else `incomplete` (stages left to run; counts: the
    journal of the stage it ran last); `input` is ok + rejected + failed. `missing`: the
    pairs still wanted when the loop stopped early (its files hold those kept so far).
    `config_sha256` hashes every stage's settings, `usage_total` is stages.json's."""
    files = result.outputs if result is not None else {}
    published = OUTPUT in files and not code
    status = ("budget" if code == EXIT_BUDGET else "interrupted" if code else
              "complete" if published else "incomplete")
    if published:
        ok, rejected, failed = files[OUTPUT], files.get(REJECTED_FILE, 0), files.get(FAILED_FILE, 0)
    elif result is not None:
        ok, rejected, failed = result.ok, result.rejected, result.failed
    else:
        ok = rejected = failed = 0
    stage = result.stage if result is not None else None
    if input_sha256 is None and stage is not None:
        input_sha256 = ws.stage_info(stage).get("input_sha")
    settings = {name: entry.get("config") for name, entry in ws.state.items()
                if not name.startswith("_") and isinstance(entry, dict)}
    assert ws.models is not None  # run_with_models opened them
    write_run_manifest(
        ws.run, ws.models, status=status, stage=stage, config_sha256=hash_value(settings),
        counts={"input": ok + rejected + failed, OK: ok, REJECTED: rejected, FAILED: failed},
        missing=missing or 0, seconds=time.monotonic() - started, resumed=resumed,
        outputs=files, exit_code=code, input_sha256=input_sha256,
        usage_total=ws.total_stats(), **(judge_check or {}))


def same_model_warning(specs: Mapping[str, str]) -> list[str]:
    """The warning line when the strong and the target model are one model, else none."""
    if specs.get("strong") and specs.get("strong") == specs.get("target"):
        return ["WARNING: " + SAME_MODEL_WARNING.format(model=specs["strong"])]
    return []


@dataclass
class GenerateResult:
    stages: list[StageResult]
    loop: LoopResult | None
    summary: dict[str, Any] | None
    exit_code: int = 0  # 4: stopped at the budget; 130: interrupted


@dataclass
class StageCommandResult:
    """What a single-stage CodecLM command did: the lines it ends with, its exit code."""

    result: StageResult
    lines: list[str]
    exit_code: int = 0  # 4: stopped at the budget; 130: interrupted


def generate(*, seeds: str, run_dir: str | Path, strong: str, target: str, n: int,
             cfg: CodecConfig, options: RunOptions, mapping: Mapping[str, str] | None = None,
             oversample: float = 2.0,
             prompts_dir: str | None = None, export_format: str | None = None,
             judge_check: int = PRE_CHECK_PROBES,
             backends: Mapping[str, Any] | None = None, say: Say = silent) -> GenerateResult:
    """encode -> metadata -> decode -> rubrics -> loop, until n pairs are kept or none are left.

    First a judge check of the strong model as judge, `judge_check` probes per kind (0:
    none), on the seeds' responses if they have some, else on packaged ones. `say` hears
    every line of the run as it happens (each stage's, the summary, the cost); nothing is
    printed here."""

    def say_lines(lines: list[str]) -> None:
        for line in lines:
            say(line)

    started = time.monotonic()
    prompts = Prompts.load(prompts_dir)
    specs = {"strong": strong, "target": target}
    # Everything is checked before the run directory is created or touched.
    scanned = scan_input(seeds, SEED_FIELDS, mapping or {})
    check_models(specs, backends, options)
    options.check_cache()
    check_writable_dir(run_dir, what="run directory")
    say_lines(same_model_warning({role: redact_spec(spec) for role, spec in specs.items()}))
    with Workspace(run_dir, overwrite=options.overwrite, say=say) as ws:
        resolve_models(ws, strong=strong, target=target)
        done: list[StageResult] = []
        checked: dict[str, Any] = {}  # the judge check's manifest entry, once it ran

        async def body(models: Models) -> LoopResult | None:
            nonlocal cfg
            ctx = make_ctx(models, cfg, prompts)
            if judge_check > 0:
                samples, data = probe_samples(seeds, mapping or {})
                before = models.stats.as_dict()
                card = await pre_check(samples, judge_check, ws.path, judge=redact_spec(strong),
                                       data=data, client=ctx.strong, settings=ctx.judge, say=say)
                checked.update(manifest_entry(card) or {})
                # Its usage is the run's like any stage's: in the totals, the cost, the budget.
                after = models.stats.as_dict()
                ws.finish("judge_check", stats={k: v - before.get(k, 0) for k, v in after.items()
                                                if isinstance(v, (int, float)) and v != before.get(k, 0)})
            for result in (await encode_stage(ws, models, ctx, seeds, mapping or {}, options),
                           metadata_stage(ws, cfg)):
                done.append(result)
                say_lines([result.line(), *result.notes])
                if result.interrupted:
                    return None
            pool = len(load_metadata(ws))
            k = cfg.per_metadata or per_metadata_for(n, pool, oversample)
            cfg = replace(cfg, per_metadata=k)
            ctx = make_ctx(models, cfg, prompts)
            # Only the pool entries n pairs need (n x oversample base instructions, k per
            # entry) are decoded and given rubrics; more are drawn only if the loop runs dry.
            draws = [min(pool, math.ceil(n * oversample / k))]
            while True:
                for stage in (decode_stage, rubrics_stage):
                    result = await stage(ws, models, ctx, options, draws=draws)
                    done.append(result)
                    say_lines([result.line(), *result.notes])
                    if result.interrupted:
                        return None
                loop = await loop_stage(ws, models, ctx, options, n, grown=len(draws) > 1)
                done.append(loop)
                # Failed records (a model that cannot answer) are retried by a re-run, not
                # by drawing more entries for the same model to fail on.
                if loop.stop != EXHAUSTED or draws[-1] >= pool or loop.failed:
                    return loop
                draws.append(min(pool, 2 * draws[-1]))
                say_lines([f"{loop.kept} of {n} pairs kept from {draws[-2]} pool entries: "
                             f"drawing {draws[-1] - draws[-2]} more of the {pool}"])

        loop = run_with_models(specs, options, body, backends, ws=ws)
        summary = None
        missing = max(0, n - loop.kept) if loop is not None else None  # if it stopped early
        if loop is not None and loop.stop != INTERRUPTED:
            summary = build_summary(ws, strong=strong, target=target, theta=cfg.theta,
                                    requested=n, stop=loop.stop)
            lines = summary_lines(summary) + cost_lines(ws) + write_summary(ws, summary)
            if export_format:
                lines.append(export_pairs(ws, export_format))
            say_lines(lines)
        else:
            partial = [] if loop is None else [
                f"incomplete: {ws.file(OUTPUT)} holds the {loop.kept} pairs kept so far; "
                f"{missing} more are wanted, and the run that finishes replaces the files"]
            if exit_code(ws, True) == EXIT_BUDGET:
                say_lines(partial + cost_lines(ws))
            else:
                say_lines(partial + cost_lines(ws)
                            + ["interrupted: run the same command again to resume"])
        code = exit_code(ws, loop is None or loop.stop == INTERRUPTED)
        write_manifest(ws, done[-1] if done else None, code, started=started,
                       resumed=sum(r.resumed for r in done), input_sha256=scanned.sha256,
                       judge_check=checked, missing=missing if code else None)
        return GenerateResult(done, loop, summary, code)


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


def export_pairs(ws: Workspace, fmt: str) -> str:
    """Write the kept pairs (output.jsonl) in a fine-tuning format beside them."""
    from synthcodec.formats import export

    target = ws.file(EXPORT_NAMES[fmt])
    n = export(fmt, target, ws.rows(OUTPUT), {}, source=ws.file(OUTPUT))
    return f"wrote {target} ({n} pairs, {fmt})"


StageCall = Callable[[Workspace, Models, Ctx], Awaitable[StageResult]]


def run_stage_command(stage: StageCall, *, run_dir: str, roles: Mapping[str, str | None],
                      cfg: CodecConfig, options: RunOptions,
                      prompts_dir: str | None = None, say: Say = silent) -> StageCommandResult:
    """The body of every single-stage CodecLM command (encode, decode, rubrics, and the
    rounds by hand): check, open RUN, resolve the models, run the stage; the lines it ends
    with and its exit code are in the result (`say` hears the lines that come before)."""
    started = time.monotonic()
    prompts = Prompts.load(prompts_dir)
    check_models({role: spec for role, spec in roles.items() if spec}, None, options)
    options.check_cache()  # both before the run directory is touched
    with Workspace(run_dir, overwrite=options.overwrite, say=say) as ws:
        specs = resolve_models(ws, **roles)
        if "target" in specs:
            for line in same_model_warning(specs):
                say(line)
        result = run_with_models(specs, options, lambda models: stage(
            ws, models, make_ctx(models, cfg, prompts)), ws=ws)
        lines = [result.line(), *result.notes, *cost_lines(ws)]
        if OUTPUT in result.outputs:
            summary = build_summary(ws, strong=specs["strong"], target=specs["target"],
                                    theta=cfg.theta, requested=None, stop="exhausted")
            lines += summary_lines(summary) + write_summary(ws, summary)
        code = exit_code(ws, True) if result.interrupted else 0
        write_manifest(ws, result, code, started=started, resumed=result.resumed)
    return StageCommandResult(result, lines, code)


def run_round_command(stage: Callable[..., Awaitable[StageResult]], *, run_dir: str,
                      strong: str | None, target: str | None, cfg: CodecConfig,
                      options: RunOptions, round_: int | None,
                      prompts_dir: str | None = None, needs_target: bool = True,
                      say: Say = silent) -> StageCommandResult:
    """The body of `respond`, `contrast` and `improve`: one round of the loop by hand."""
    roles = {"strong": strong, **({"target": target} if needs_target else {})}
    return run_stage_command(lambda ws, models, ctx: stage(ws, models, ctx, options, round_),
                             run_dir=run_dir, roles=roles, cfg=cfg, options=options,
                             prompts_dir=prompts_dir, say=say)
