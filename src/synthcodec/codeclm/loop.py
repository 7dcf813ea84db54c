"""Contrastive Filtering over the base instructions: the per-instruction loop (`generate`)
and the same steps one round at a time (`respond`, `contrast`, `improve`).

Both write the same final files, the run layout of every command (docs/run-layout.md):
RUN/output.jsonl (kept pairs, with lineage), RUN/rejected.jsonl and RUN/failed.jsonl (every
base instruction that did not make it, with its reason under `_synthcodec`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synthcodec.codeclm.rouge import NearDuplicateFilter
from synthcodec.codeclm.stages import (
    FAILED_FILE,
    INSTRUCTIONS,
    OUTPUT,
    REJECTED_FILE,
    RUBRICS,
    CodecStage,
    StageResult,
    _flat,
    _result,
    base_items,
    envelope,
    load_actions,
    load_candidates,
    loop_config,
    map_stage,
)
from synthcodec.codeclm.steps import (
    IMPROVE,
    KEEP_STRONG,
    KEEP_TARGET,
    NEAR_DUPLICATE,
    UNRESOLVED,
    Ctx,
)
from synthcodec.codeclm.workspace import Workspace
from synthcodec.errors import UserError
from synthcodec.executors import Item
from synthcodec.records import META, Record, reason_of
from synthcodec.session import Models, RunOptions
from synthcodec.store import FAILED, OK, REJECTED

REACHED, EXHAUSTED, INTERRUPTED = "reached", "exhausted", "interrupted"


@dataclass
class Collected:
    kept: int
    rejected: int
    near_duplicates: int
    failed: int = 0


def collect(ws: Workspace, kept_rows: list[Record], dropped: list[Record],
            threshold: float, n: int | None = None,
            position: Mapping[str, int] | None = None) -> Collected:
    """Publish the run's three files: output.jsonl (kept pairs, near-duplicates of earlier
    kept ones removed, at most n), rejected.jsonl and failed.jsonl (every other instruction,
    in the one row envelope: the data plus `_synthcodec {id, status, reason}`).

    Once n pairs are kept, instructions after the n-th kept one in input order (`position`:
    id -> input position) are left out of every file: whether they ran depends on timing
    (what was in flight when the n-th pair came), so the files depend only on the input."""
    near = NearDuplicateFilter(threshold)
    kept: list[Record] = []
    dropped = list(dropped)
    for row in kept_rows:
        if n is not None and len(kept) >= n:
            break  # finished after the target was reached: stays in the journal, unused
        if near.add(row["instruction"]):
            kept.append(row)
        else:
            dropped.append(envelope({**row, "decision": NEAR_DUPLICATE}, REJECTED,
                                    f"near-duplicate of a kept instruction "
                                    f"(ROUGE-L > {threshold:g})"))
    if n is not None and len(kept) >= n and position:
        last = max(position[str(row["id"])] for row in kept)
        dropped = [row for row in dropped if position.get(str(row.get("id")), -1) <= last]
    rejected = [row for row in dropped if (row.get(META) or {}).get("status") != FAILED]
    failed = [row for row in dropped if (row.get(META) or {}).get("status") == FAILED]
    ws.publish(OUTPUT, kept)
    ws.publish(REJECTED_FILE, rejected)
    ws.publish(FAILED_FILE, failed)
    return Collected(len(kept), len(rejected), near.removed, len(failed))


def _dropped_rows(journal: Any) -> list[Record]:
    """The loop's rejected and failed records, in input order, as the journal holds them
    (engine.dropped_row: the data plus `_synthcodec`)."""
    rows = [envelope(r, REJECTED, reason_of(r)) for r in journal.rows(REJECTED)]
    return rows + [envelope(r, FAILED, reason_of(r)) for r in journal.rows(FAILED)]


@dataclass
class LoopResult(StageResult):
    stop: str = EXHAUSTED
    kept: int = 0
    near_duplicates: int = 0


def in_flight(models: Models, n: int | None, kept: int) -> int:
    """Records in flight. With --batch every record in flight goes into each pass, and all of
    them finish even once n pairs are kept, so the loop keeps only as many in flight as
    pairs are still wanted (records that finish make room for the next); else what the
    models can take."""
    if models.batch_size is None or n is None:
        return models.concurrency()
    return max(1, min(models.concurrency(), n - kept))


async def loop_stage(ws: Workspace, models: Models, ctx: Ctx, options: RunOptions,
                     n: int | None = None, grown: bool = False) -> LoopResult:
    """Every base instruction through evolve(), until n pairs are kept or none are left.
    `grown`: generate drew more of the pool after a pass ran dry (Workspace.begin)."""
    actions = load_actions(ws)
    items = base_items(ws)
    journal = ws.begin("loop", loop_config(ctx), input_sha=ws.sha(INSTRUCTIONS, RUBRICS),
                       grown=grown)
    assert journal is not None
    threshold = ctx.cfg.rouge_threshold
    usage_total: dict[str, int] = {}
    evolve = CodecStage.of("evolve", ctx, models, name="loop", actions=actions)
    while True:
        # Stop at n: a pass over the kept pairs as they are journaled, on the driver (the
        # executor calls it after each kept record), never state inside the step.
        near = NearDuplicateFilter(threshold)
        for out in _flat(journal.rows(OK)):
            near.add(out["instruction"])
        reached = n is not None and len(near) >= n

        def enough(outputs: list[Record], near: NearDuplicateFilter = near) -> bool:
            for out in outputs:
                near.add(out["instruction"])
            return n is not None and len(near) >= n

        journal.prepare()  # finished() answers from a snapshot of whether the table is empty
        pending = [i for i in items if not journal.finished(i.id)]
        if reached or not pending:
            run = None
        else:
            run, usage = await map_stage(journal, "loop", items, evolve, models, options,
                                         stop_when=enough if n is not None else None,
                                         concurrency=in_flight(models, n, len(near)))
            reached = run.reached
            for k, v in usage.items():
                usage_total[k] = usage_total.get(k, 0) + v
        # Published also when it stopped early (interrupted, or at the budget): the pairs kept
        # so far, which the run that finishes replaces.
        got = collect(ws, _flat(journal.rows(OK)), _dropped_rows(journal), threshold, n,
                      position={str(i.record["id"]): i.idx for i in items})
        if run is not None and run.interrupted:
            stop = INTERRUPTED
            break
        if n is not None and got.kept >= n:
            stop = REACHED
            break
        if not reached:
            # The executor went through every item (failed ones wait for the next run).
            stop = EXHAUSTED
            break
        # Reached in completion order but not in input order (near-duplicates count
        # differently): fewer than n published, so take more records.
    result = LoopResult("loop", stop=stop)
    result.resumed = run.counts.resumed if run is not None else 0
    totals = journal.counts()
    result.ok, result.rejected, result.failed = totals[OK], totals[REJECTED], totals[FAILED]
    result.interrupted = stop == INTERRUPTED
    result.kept, result.near_duplicates = got.kept, got.near_duplicates
    result.outputs = {OUTPUT: got.kept, REJECTED_FILE: got.rejected, FAILED_FILE: got.failed}
    ws.finish("loop", stats=usage_total, stop=stop, requested=n,
              near_duplicates=result.near_duplicates, mode="loop")
    return result


# --------------------------------------------------------------------------- one round at a time

def responses_file(r: int) -> str:
    return f"responses_{r}.jsonl"


def contrast_file(r: int) -> str:
    return f"contrast_{r}.jsonl"


def improved_file(r: int) -> str:
    return f"improved_{r}.jsonl"


def latest_round(ws: Workspace, pattern: str) -> int:
    """The highest r for which RUN/<pattern with r> exists (0 when none)."""
    regex = re.compile(pattern.replace("{r}", r"(\d+)") + "$")
    found = [int(m.group(1)) for p in ws.path.iterdir() if (m := regex.match(p.name))]
    return max(found, default=0)


def round_input(ws: Workspace, r: int) -> tuple[list[Item], str]:
    if r == 1:
        return base_items(ws), INSTRUCTIONS
    name = improved_file(r)
    return load_candidates(ws, name, "improve"), name


async def respond_stage(ws: Workspace, models: Models, ctx: Ctx, options: RunOptions,
                        r: int | None = None) -> StageResult:
    """Strong and target answers for round r's candidates -> responses_<r>.jsonl."""
    r = r or max(1, latest_round(ws, r"improved_{r}\.jsonl"))
    items, source = round_input(ws, r)
    config = {k: v for k, v in loop_config(ctx).items()
              if k in ("strong", "target", "answer_temperature", "max_tokens")}
    journal = ws.begin(f"respond_{r}", config, input_sha=ws.sha(source))
    assert journal is not None
    run, usage = await map_stage(journal, f"respond round {r}", items,
                                 CodecStage.of("respond", ctx, models), models, options)
    result = _result(f"respond_{r}", journal, run)
    if not run.interrupted:
        result.outputs[responses_file(r)] = ws.publish(responses_file(r), _flat(journal.rows(OK)))
        ws.publish_rejects(f"respond_{r}", journal)
    ws.finish(f"respond_{r}", stats=usage)
    return result


async def contrast_stage(ws: Workspace, models: Models, ctx: Ctx, options: RunOptions,
                         r: int | None = None) -> StageResult:
    """Judge round r's answers in both orders -> contrast_<r>.jsonl, then the run's
    output/rejected/failed files."""
    r = r or latest_round(ws, r"responses_{r}\.jsonl")
    if r < 1:
        raise UserError(f"no responses in {ws.path}: run `synthcodec respond {ws.path}` first")
    items = load_candidates(ws, responses_file(r), "respond")
    config = loop_config(ctx)
    journal = ws.begin(f"contrast_{r}", config, input_sha=ws.sha(responses_file(r)))
    assert journal is not None
    run, usage = await map_stage(journal, f"contrast round {r}", items,
                                 CodecStage.of("contrast", ctx, models), models, options)
    result = _result(f"contrast_{r}", journal, run)
    if not run.interrupted:
        rows = _flat(journal.rows(OK))
        result.outputs[contrast_file(r)] = ws.publish(contrast_file(r), rows)
        ws.publish_rejects(f"contrast_{r}", journal)
        got = collect_rounds(ws, ctx.cfg.rouge_threshold)
        result.outputs.update({OUTPUT: got.kept, REJECTED_FILE: got.rejected,
                               FAILED_FILE: got.failed})
        waiting = sum(1 for row in rows if row["decision"] == IMPROVE)
        if waiting:
            result.notes.append(f"{waiting} instructions wait for another round: "
                                f"`synthcodec improve {ws.path}`, then respond and contrast")
    ws.finish(f"contrast_{r}", stats=usage, mode="rounds")
    return result


def collect_rounds(ws: Workspace, threshold: float) -> Collected:
    """output.jsonl / rejected.jsonl / failed.jsonl from every contrast round so far."""
    kept, rejected = [], []
    for r in range(1, latest_round(ws, r"contrast_{r}\.jsonl") + 1):
        if not ws.exists(contrast_file(r)):
            continue
        for _, row in ws.rows(contrast_file(r)):
            if row["decision"] in (KEEP_STRONG, KEEP_TARGET):
                kept.append(row)
            elif row["decision"] == UNRESOLVED:
                rejected.append(envelope(row, REJECTED,
                                         "unresolved: |gap| <= theta in every iteration"))
    kept.sort(key=lambda row: (row["iteration"], row["id"]))
    got = collect(ws, kept, rejected, threshold)
    ws.finish("rounds", kept=got.kept, near_duplicates=got.near_duplicates, stop=EXHAUSTED)
    return got


async def improve_stage(ws: Workspace, models: Models, ctx: Ctx, options: RunOptions,
                        r: int | None = None) -> StageResult:
    """Rewrite round r's undecided instructions -> improved_<r+1>.jsonl."""
    r = r or latest_round(ws, r"contrast_{r}\.jsonl")
    if r < 1:
        raise UserError(f"nothing to improve in {ws.path}: base instructions are judged before "
                        f"any rewrite, so run `synthcodec respond {ws.path}` and "
                        f"`synthcodec contrast {ws.path}` first")
    if r >= ctx.cfg.max_iterations:
        raise UserError(f"round {r} was the last (--max-iterations {ctx.cfg.max_iterations}): "
                        "its undecided instructions are rejected as unresolved")
    actions = load_actions(ws)
    items = [i for i in load_candidates(ws, contrast_file(r), "contrast")
             if i.record["decision"] == IMPROVE]
    config = {"strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("improve"),
              **ctx.cfg.subset("temperature", "max_tokens", "seed", "parse_tries")}
    journal = ws.begin(f"improve_{r + 1}", config, input_sha=ws.sha(contrast_file(r), RUBRICS))
    assert journal is not None

    step = CodecStage.of("improve", ctx, models, actions=actions)

    run, usage = await map_stage(journal, f"improve round {r + 1}", items, step, models,
                                 options)
    result = _result(f"improve_{r + 1}", journal, run)
    if not run.interrupted:
        name = improved_file(r + 1)
        result.outputs[name] = ws.publish(name, _flat(journal.rows(OK)))
        ws.publish_rejects(f"improve_{r + 1}", journal)
    ws.finish(f"improve_{r + 1}", stats=usage)
    return result
