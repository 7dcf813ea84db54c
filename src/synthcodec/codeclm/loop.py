"""Contrastive Filtering over the base instructions, as plans for the run driver: the loop
(`generate`: every base instruction through `steps.evolve`) and the same steps one round at
a time (`respond`, `contrast`, `improve`).

Both end in one `collect` pass, so for the same inputs they write the same final files,
the run layout of every command (docs/run-layout.md): RUN/output.jsonl (kept pairs, with
lineage), RUN/rejected.jsonl and RUN/failed.jsonl (every base instruction that did not make
it, with its reason under `_synthcodec` {id, index: its record in instructions.jsonl}).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from synthcodec.codeclm.files import (
    FAILED_FILE,
    INSTRUCTIONS,
    OUTPUT,
    REJECTED_FILE,
    RUBRICS,
    kept_rows,
    load_actions,
    load_candidates,
    publish,
    publish_rejects,
    rows,
    sha,
)
from synthcodec.codeclm.rouge import NearDuplicateFilter
from synthcodec.codeclm.stages import CodecStage, loop_config, publish_as
from synthcodec.codeclm.steps import (
    IMPROVE,
    KEEP_STRONG,
    KEEP_TARGET,
    NEAR_DUPLICATE,
    UNRESOLVED,
    StepContext,
    base_candidate,
    unresolved_reason,
)
from synthcodec.driver import Plan, Published
from synthcodec.errors import UserError
from synthcodec.executors import Item
from synthcodec.records import META, Record
from synthcodec.session import Models
from synthcodec.store import FAILED, OK, REJECTED, Journal, RunDir

REACHED, EXHAUSTED, INTERRUPTED = "reached", "exhausted", "interrupted"
# n pairs were kept in completion order but fewer in input order (near-duplicates count
# differently): the loop takes more records
SHORT = "short"


def base_items(path: Path) -> list[Item]:
    """Decoded instructions as iteration-1 candidates, in instructions.jsonl order."""
    return [Item(i.id, i.idx, base_candidate(i.record))
            for i in load_candidates(path, INSTRUCTIONS, "decode")]


def collect(run: RunDir, kept: list[Record], dropped: list[Record], threshold: float,
            base: Mapping[str, Item], n: int | None = None) -> tuple[Published, int]:
    """Publish the run's three files from every base instruction's final row, in input
    order: output.jsonl (kept pairs, near-duplicates of earlier kept ones removed, at most
    n), rejected.jsonl and failed.jsonl (every other instruction, in the one row envelope:
    the data plus `_synthcodec` {id, index, status, reason}); `base`: instruction id -> its
    record. Also how many kept pairs were near-duplicates.

    Once n pairs are kept, instructions after the n-th kept one in input order are left out
    of every file: whether they ran depends on timing (what was in flight when the n-th pair
    came), so the files depend only on the input."""
    near = NearDuplicateFilter(threshold)
    out: list[Record] = []
    dropped = list(dropped)
    for row in kept:
        if n is not None and len(out) >= n:
            break  # finished after the target was reached: stays in the journal, unused
        if near.add(row["instruction"]):
            out.append(row)
        else:
            dropped.append(on_base({**row, "decision": NEAR_DUPLICATE}, base, REJECTED,
                                   f"near-duplicate of a kept instruction "
                                   f"(ROUGE-L > {threshold:g})"))
    if n is not None and len(out) >= n:
        last = max(base[str(row["id"])].idx for row in out)
        dropped = [row for row in dropped if (row.get(META) or {}).get("index", -1) <= last]
    rejected = [row for row in dropped if row[META]["status"] != FAILED]
    failed = [row for row in dropped if row[META]["status"] == FAILED]
    outputs = {OUTPUT: publish(run, OUTPUT, out), REJECTED_FILE: publish(run, REJECTED_FILE, rejected),
               FAILED_FILE: publish(run, FAILED_FILE, failed)}
    counts = {OK: len(out), REJECTED: len(rejected), FAILED: len(failed)}
    return Published(outputs, counts=counts), near.removed


def on_base(row: Record, base: Mapping[str, Item], status: str | None = None,
            reason: str | None = None) -> Record:
    """A candidate's row in the envelope of its base instruction's record: `_synthcodec`
    {id, index} of that record (whatever round it is from), status and reason."""
    item = base[str(row["id"])]
    meta = dict(row.get(META) or {})
    meta.update(id=item.id, index=item.idx)
    if status is not None:
        meta.update(status=status, reason=reason)
    return {**{k: v for k, v in row.items() if k != META}, META: meta}


def in_flight(models: Models, n: int | None, kept: int) -> int:
    """Records in flight. With --batch every record in flight goes into each pass, and all of
    them finish even once n pairs are kept, so the loop keeps only as many in flight as
    pairs are still wanted (records that finish make room for the next); else what the
    models can take."""
    if models.batch_size is None or n is None:
        return models.concurrency()
    return max(1, min(models.concurrency(), n - kept))


@dataclass
class LoopState:
    """What the loop's pass found, for `generate` to decide what comes next."""

    stop: str = EXHAUSTED  # reached / exhausted / interrupted / short
    kept: int = 0
    failed: int = 0
    near_removed: int = 0  # kept pairs dropped as near-duplicates of earlier ones
    near: NearDuplicateFilter = field(default_factory=lambda: NearDuplicateFilter(0.7))


def loop_plan(ctx: StepContext, models: Models, run: RunDir, n: int | None, state: LoopState,
              grown: bool = False) -> Plan:
    """Every base instruction through evolve(), until n pairs are kept or none are left.
    `grown`: generate drew more of the pool after a pass ran dry (the journaled records
    stay valid)."""
    items = base_items(run.path)
    base = {str(i.record["id"]): i for i in items}
    threshold = ctx.cfg.rouge_threshold
    evolve = CodecStage.of("evolve", ctx, models, name="loop", actions=load_actions(run.path))

    def todo() -> list[Item]:
        # Stop at n: a pass over the kept pairs as they are journaled, on the driver (the
        # executor calls it after each kept record), never state inside the step.
        state.near = NearDuplicateFilter(threshold)
        for out in kept_rows(run.journal("loop")):
            state.near.add(out["instruction"])
        return [] if n is not None and len(state.near) >= n else items

    def enough(outputs: list[Record]) -> bool:
        for out in outputs:
            state.near.add(out["instruction"])
        return n is not None and len(state.near) >= n

    def publish_loop(run: RunDir, journal: Journal | None, stopped: bool) -> Published:
        # Published also when it stopped early (interrupted, or at the budget): the pairs
        # kept so far, which the run that finishes replaces.
        assert journal is not None
        dropped = list(journal.rows(REJECTED)) + list(journal.rows(FAILED))
        published, state.near_removed = collect(run, kept_rows(journal), dropped, threshold,
                                                base, n)
        assert published.counts is not None
        state.kept, state.failed = published.counts[OK], published.counts[FAILED]
        reached = n is not None and len(state.near) >= n
        state.stop = (INTERRUPTED if stopped else REACHED if n is not None and state.kept >= n
                      else SHORT if reached else EXHAUSTED)
        if stopped and n is not None:
            published.missing = max(0, n - state.kept)
            published.missing_text = "more pairs are wanted"
        return published

    return Plan(evolve, todo, None, name="loop", settings=loop_config(ctx),
                input_sha=sha(run.path, INSTRUCTIONS, RUBRICS), grown=grown,
                stop_when=enough if n is not None else None,
                concurrency=lambda models: in_flight(models, n, len(state.near)),
                publish=publish_loop,
                info=lambda: {"stop": state.stop, "requested": n, "mode": "loop",
                              "near_duplicates": state.near_removed})


# --------------------------------------------------------------------------- one round at a time

def responses_file(r: int) -> str:
    return f"responses_{r}.jsonl"


def contrast_file(r: int) -> str:
    return f"contrast_{r}.jsonl"


def improved_file(r: int) -> str:
    return f"improved_{r}.jsonl"


def latest_round(path: Path, pattern: str) -> int:
    """The highest r for which RUN/<pattern with r> exists (0 when none)."""
    regex = re.compile(pattern.replace("{r}", r"(\d+)") + "$")
    found = [int(m.group(1)) for p in path.iterdir() if (m := regex.match(p.name))]
    return max(found, default=0)


def respond_plan(ctx: StepContext, models: Models, run: RunDir, r: int | None = None) -> Plan:
    """Strong and target answers for round r's candidates -> responses_<r>.jsonl."""
    r = r or max(1, latest_round(run.path, r"improved_{r}\.jsonl"))
    if r == 1:
        items, source = base_items(run.path), INSTRUCTIONS
    else:
        items, source = load_candidates(run.path, improved_file(r), "improve"), improved_file(r)
    settings = {k: v for k, v in loop_config(ctx).items()
                if k in ("strong", "target", "answer_temperature", "max_tokens")}
    return Plan(CodecStage.of("respond", ctx, models, name=f"respond_{r}"), lambda: items,
                len(items), label=f"respond round {r}", settings=settings,
                input_sha=sha(run.path, source),
                publish=publish_as(responses_file(r), f"respond_{r}"))


def contrast_plan(ctx: StepContext, models: Models, run: RunDir, r: int | None = None) -> Plan:
    """Judge round r's answers in both orders -> contrast_<r>.jsonl, then the run's
    output/rejected/failed files from every round so far."""
    r = r or latest_round(run.path, r"responses_{r}\.jsonl")
    if r < 1:
        raise UserError(f"no responses in {run.path}: run `synthcodec respond {run.path}` "
                        "first")
    items = load_candidates(run.path, responses_file(r), "respond")

    def publish_round(run: RunDir, journal: Journal | None, stopped: bool) -> Published:
        assert journal is not None
        if stopped:
            return Published({})
        judged = kept_rows(journal)
        outputs = {contrast_file(r): publish(run, contrast_file(r), judged)}
        publish_rejects(run, f"contrast_{r}", journal)
        published = collect_rounds(run, ctx)
        published.outputs = {**outputs, **published.outputs}
        waiting = sum(1 for row in judged if row["decision"] == IMPROVE)
        if waiting:
            published.notes.append(f"{waiting} instructions wait for another round: "
                                   f"`synthcodec improve {run.path}`, then respond and contrast")
        return published

    return Plan(CodecStage.of("contrast", ctx, models, name=f"contrast_{r}"), lambda: items,
                len(items), label=f"contrast round {r}", settings=loop_config(ctx),
                input_sha=sha(run.path, responses_file(r)), publish=publish_round,
                info=lambda: {"mode": "rounds"})


def improve_plan(ctx: StepContext, models: Models, run: RunDir, r: int | None = None) -> Plan:
    """Rewrite round r's undecided instructions -> improved_<r+1>.jsonl."""
    r = r or latest_round(run.path, r"contrast_{r}\.jsonl")
    if r < 1:
        raise UserError(f"nothing to improve in {run.path}: base instructions are judged "
                        f"before any rewrite, so run `synthcodec respond {run.path}` and "
                        f"`synthcodec contrast {run.path}` first")
    if r >= ctx.cfg.max_iterations:
        raise UserError(f"round {r} was the last (--max-iterations {ctx.cfg.max_iterations}): "
                        "its undecided instructions are rejected as unresolved")
    items = [i for i in load_candidates(run.path, contrast_file(r), "contrast")
             if i.record["decision"] == IMPROVE]
    settings = {"strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("improve"),
                **ctx.cfg.subset("temperature", "max_tokens", "seed", "parse_tries")}
    step = CodecStage.of("improve", ctx, models, name=f"improve_{r + 1}",
                         actions=load_actions(run.path))
    return Plan(step, lambda: items, len(items), label=f"improve round {r + 1}",
                settings=settings, input_sha=sha(run.path, contrast_file(r), RUBRICS),
                publish=publish_as(improved_file(r + 1), f"improve_{r + 1}"))


def collect_rounds(run: RunDir, ctx: StepContext) -> Published:
    """output.jsonl / rejected.jsonl / failed.jsonl from every round so far: each base
    instruction's latest outcome (kept, unresolved, rejected or failed in some step; one
    still waiting for its next round is in no file), through the loop's `collect`."""
    path = run.path
    base = {str(i.record["id"]): i for i in base_items(path)}
    final: dict[str, Record] = {}
    rounds = max(latest_round(path, r"contrast_{r}\.jsonl"),
                 latest_round(path, r"responses_{r}\.jsonl"))
    for r in range(1, rounds + 1):
        # In the order the steps run: round r's rewrite, its answers, its verdicts.
        for stage in ((f"improve_{r}",) if r > 1 else ()) + (f"respond_{r}", f"contrast_{r}"):
            if (path / f"rejects/{stage}.jsonl").exists():
                for _, row in rows(path, f"rejects/{stage}.jsonl"):
                    final[str(row["id"])] = on_base(row, base)
        if not (path / contrast_file(r)).exists():
            continue
        for _, row in rows(path, contrast_file(r)):
            if row["decision"] in (KEEP_STRONG, KEEP_TARGET):
                final[str(row["id"])] = row
            elif row["decision"] == UNRESOLVED:
                final[str(row["id"])] = on_base(row, base, REJECTED, unresolved_reason(ctx.cfg))
            else:  # waiting for its rewrite
                final.pop(str(row["id"]), None)
    ordered = sorted(final.values(), key=lambda row: base[str(row["id"])].idx)
    kept = [row for row in ordered if META not in row]
    dropped = ([row for row in ordered if META in row and row[META]["status"] != FAILED]
               + [row for row in ordered if META in row and row[META]["status"] == FAILED])
    published, near_removed = collect(run, kept, dropped, ctx.cfg.rouge_threshold, base)
    run.ledger.finish("rounds", kept=len(kept) - near_removed, near_duplicates=near_removed,
                      stop=EXHAUSTED)
    return published
