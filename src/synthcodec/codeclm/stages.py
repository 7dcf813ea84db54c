"""Each CodecLM stage as an async function over a Workspace: read a file, map a step, publish.

Stages run inside one event loop with one `Models` (the clients' limits and sessions are
bound to the loop), so `generate` loads the embedded model once for every stage. The work
per record is a `CodecStage` (the stage contract of stages/base.py): plain settings, the
step's clients built in `setup`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synthcodec.codeclm import steps
from synthcodec.codeclm.config import CodecConfig
from synthcodec.codeclm.pool import build_pool, check_pool
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.rouge import NearDuplicateFilter
from synthcodec.codeclm.steps import Ctx, base_candidate, make_ctx
from synthcodec.codeclm.workspace import Workspace
from synthcodec.errors import EveryRecordFailed, UserError
from synthcodec.executors import Item, RunResult, StepResult, StopWhen, run_stage
from synthcodec.io import FieldSpec, extract, iter_rows, scan_input
from synthcodec.judge import JudgeSettings
from synthcodec.records import META, Record, record_id
from synthcodec.session import Models, RunOptions
from synthcodec.stages.base import ModelStage
from synthcodec.store import OK, REJECTED, Journal, hash_file

ENCODED, METADATA, INSTRUCTIONS, RUBRICS = ("encoded.jsonl", "metadata.jsonl",
                                            "instructions.jsonl", "rubrics.jsonl")
# The run layout of every command (docs/run-layout.md): kept, rejected and failed rows.
OUTPUT, REJECTED_FILE, FAILED_FILE = "output.jsonl", "rejected.jsonl", "failed.jsonl"
SEED_FIELDS = [FieldSpec("instruction"), FieldSpec("id", required=False, kind=(str, int))]


STEPS_WITH_ACTIONS = ("improve", "evolve")


@dataclass
class CodecStage(ModelStage):
    """One CodecLM step over records: encode, decode, rubrics, respond, contrast, improve,
    or evolve (the whole Contrastive Filtering loop of one base instruction).

    Built from plain settings (model specs, CodecConfig, prompt texts, judge settings, the
    rubric actions per metadata id), so it can be shipped to another process; `setup`
    makes the steps' context from the live clients there.
    """

    step: str = "encode"
    cfg: CodecConfig = field(default_factory=CodecConfig)
    prompts: Prompts | None = None
    judge: JudgeSettings | None = None
    strong: str = ""
    target: str | None = None
    actions: dict[str, list[str]] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.step
        self.roles = {"strong": self.strong, **({"target": self.target} if self.target else {})}

    @classmethod
    def of(cls, step: str, ctx: Ctx, models: Models, name: str = "",
           actions: Mapping[str, list[str]] | None = None) -> "CodecStage":
        """The stage for `step` with the settings of `ctx` (what the pipeline resolved)."""
        return cls(step=step, cfg=ctx.cfg, prompts=ctx.prompts, judge=ctx.judge,
                   strong=models.specs.get("strong", ""), target=models.specs.get("target"),
                   actions=dict(actions or {}), name=name)

    async def setup(self, models: Models) -> None:
        self._ctx = make_ctx(models, self.cfg, self.prompts or Prompts.load(None), self.judge)

    async def run(self, record: Record) -> StepResult:
        fn = getattr(steps, self.step)
        if self.step in STEPS_WITH_ACTIONS:
            return await fn(self._ctx, record, self.actions.get(str(record["metadata_id"]), []))
        return await fn(self._ctx, record)


@dataclass
class StageResult:
    stage: str
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    resumed: int = 0
    interrupted: bool = False
    outputs: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{self.stage}: ok {self.ok}", f"rejected {self.rejected}",
                 f"failed {self.failed}"]
        if self.resumed:
            parts.append(f"resumed {self.resumed}")
        out = ", ".join(f"{name} ({n})" for name, n in self.outputs.items())
        return " | ".join(parts) + (f" -> {out}" if out else "")


async def map_stage(journal: Journal, name: str, items: list[Item], step: CodecStage,
                    models: Models, options: RunOptions, *, stop_when: StopWhen | None = None,
                    concurrency: int | None = None) -> tuple[RunResult, dict[str, int]]:
    """Run `step` over `items` (runner.run_stage, the one place stages run); returns the
    result and the usage delta."""
    done = await run_stage(step, items, journal, models, options, label=name,
                           stop_when=stop_when, concurrency=concurrency)
    return done.result, done.usage


def _result(stage: str, journal: Journal, run: RunResult) -> StageResult:
    totals = journal.counts()
    return StageResult(stage, ok=totals[OK], rejected=totals[REJECTED], failed=totals["failed"],
                       resumed=run.counts.resumed, interrupted=run.interrupted)


def _flat(rows: Iterable[Any]) -> list[Record]:
    return [r for outputs in rows for r in (outputs if isinstance(outputs, list) else [outputs])]


# --------------------------------------------------------------------------- encode

def seed_items(path: str, mapping: Mapping[str, str], limit: int | None) -> list[Item]:
    """Seeds `{id?, instruction}`; a seed without an id is named by its line."""
    scan_input(path, SEED_FIELDS, mapping)
    items = []
    for idx, (line, row) in enumerate(iter_rows(path)):
        if limit is not None and idx >= limit:
            break
        ours = extract(path, line, row, SEED_FIELDS, mapping)
        seed_id = str(ours.get("id", f"line{line}"))
        items.append(Item(record_id(idx, row), idx,
                          {"seed_id": seed_id, "instruction": ours["instruction"]}))
    return items


async def encode_stage(ws: Workspace, models: Models, ctx: Ctx, seeds: str,
                       mapping: Mapping[str, str], options: RunOptions) -> StageResult:
    config = {"seeds": str(seeds), "fields": dict(mapping), "limit": options.limit,
              "strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("encode"),
              **ctx.cfg.subset("temperature", "max_tokens")}
    items = seed_items(seeds, mapping, options.limit)
    journal = ws.begin("encode", config, input_sha=hash_file(seeds))
    assert journal is not None
    run, usage = await map_stage(journal, "encode", items,
                                 CodecStage.of("encode", ctx, models), models, options)
    result = _result("encode", journal, run)
    if not run.interrupted:
        result.outputs[ENCODED] = ws.publish(ENCODED, _flat(journal.rows(OK)))
        ws.publish_rejects("encode", journal)
    ws.finish("encode", stats=usage, seeds=len(items))
    return result


# --------------------------------------------------------------------------- metadata

def metadata_stage(ws: Workspace, cfg: CodecConfig) -> StageResult:
    """Build metadata.jsonl from encoded.jsonl, unless the user wrote or edited it."""
    result = StageResult("metadata")
    config = cfg.subset("pool_size", "seed")
    if ws.edited_by_hand(METADATA) and not ws.overwrite:
        rows = load_metadata(ws)
        result.notes.append(f"{ws.file(METADATA)} was written or edited by hand: using its "
                            f"{len(rows)} entries as they are (--overwrite rebuilds it)")
        result.ok = len(rows)
        ws.finish("metadata", config=config, hand_written=True)
        return result
    encoded = [row for _, row in ws.rows(ENCODED, made_by="encode SEEDS --strong MODEL -o")]
    if not encoded:
        raise EveryRecordFailed(f"no seed was encoded (reasons in "
                                f"{ws.file('rejects/encode.jsonl')}): nothing to build a "
                                "metadata pool from")
    pool = build_pool(encoded, cfg.pool_size, cfg.seed)
    observed = sum(1 for e in pool if e["source"] == "observed")
    ws.begin("metadata", config, input_sha=ws.sha(ENCODED), journal=False)
    result.ok = len(pool)
    result.outputs[METADATA] = ws.publish(METADATA, pool)
    if len(pool) < cfg.pool_size:
        result.notes.append(f"metadata pool has {len(pool)} entries, fewer than --size "
                            f"{cfg.pool_size}: the seeds' skills allow no more distinct pairs")
    ws.finish("metadata", observed=observed, mixed=len(pool) - observed, hand_written=False)
    return result


def load_metadata(ws: Workspace) -> list[Record]:
    return check_pool(str(ws.file(METADATA)), ws.rows(METADATA, made_by="metadata"))


# --------------------------------------------------------------------------- decode

async def decode_stage(ws: Workspace, models: Models, ctx: Ctx, options: RunOptions,
                       draws: Sequence[int] = ()) -> StageResult:
    """Base instructions from the pool entries drawn so far: `draws` are the growing pool
    sizes `generate` drew (empty: the whole pool). A larger draw decodes only the entries
    added (the journal keeps the earlier ones) and appends their instructions."""
    pool = load_metadata(ws)
    block = {m["id"]: bisect_right(draws, i) for i, m in enumerate(pool)}
    pool = pool[:draws[-1]] if draws else pool
    config = {"strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("decode"),
              **ctx.cfg.subset("temperature", "max_tokens", "per_metadata", "parse_tries",
                               "rouge_threshold")}
    journal = ws.begin("decode", config, input_sha=ws.sha(METADATA))
    assert journal is not None
    items = [Item(record_id(i, m), i, m) for i, m in enumerate(pool)]
    run, usage = await map_stage(journal, "decode", items,
                                 CodecStage.of("decode", ctx, models), models, options)
    result = _result("decode", journal, run)
    if not run.interrupted:
        kept, dropped = dedupe_instructions(_flat(journal.rows(OK)), ctx.cfg.rouge_threshold,
                                            block)
        result.outputs[INSTRUCTIONS] = ws.publish(INSTRUCTIONS, kept)
        ws.publish_rejects("decode", journal)
        if dropped:
            ws.file("rejects").mkdir(exist_ok=True)
            ws.run.publish_jsonl("rejects/decode_duplicates.jsonl", dropped)
        result.notes.append(f"decode: {len(dropped)} near-duplicate base instructions removed "
                            f"(ROUGE-L > {ctx.cfg.rouge_threshold:g})")
        ws.finish("decode", stats=usage, near_duplicates=len(dropped))
    else:
        ws.finish("decode", stats=usage)
    return result


def dedupe_instructions(rows: list[Record], threshold: float,
                        block: Mapping[str, int] | None = None
                        ) -> tuple[list[Record], list[Record]]:
    """Round-robin order (the k-th instruction of every entry before any (k+1)-th), so a run
    stopped at n kept pairs covers the pool evenly; near-duplicates of earlier ones dropped
    (in the row envelope of every run: the reason under `_synthcodec`). `block`: metadata id
    -> the draw it came in; each draw's instructions come after the earlier draws', so the
    file only grows at its end and the loop's journaled records keep their positions."""
    block = block or {}
    # stable: metadata order within each (draw, k)
    ordered = sorted(rows, key=lambda r: (block.get(r["metadata_id"], 0), r["k"]))
    near = NearDuplicateFilter(threshold)
    kept, dropped = [], []
    for row in ordered:
        if near.add(row["instruction"]):
            kept.append(row)
        else:
            dropped.append(envelope(row, REJECTED, f"near-duplicate (ROUGE-L > {threshold:g})"))
    return kept, dropped


def envelope(row: Record, status: str, reason: str) -> Record:
    """A dropped row of generate (the row envelope of every run): its fields, and ours
    under `_synthcodec`."""
    data = {k: v for k, v in row.items() if k != META}
    return {**data, META: {**(row.get(META) or {}), "id": data.get("id"), "status": status,
                           "reason": reason}}


# --------------------------------------------------------------------------- rubrics

async def rubrics_stage(ws: Workspace, models: Models, ctx: Ctx, options: RunOptions,
                        draws: Sequence[int] = ()) -> StageResult:
    """Rubrics and actions for the pool entries drawn so far (as decode; empty: all)."""
    pool = load_metadata(ws)[:draws[-1] if draws else None]
    config = {"strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("rubrics"),
              **ctx.cfg.subset("temperature", "max_tokens", "n_rubrics", "parse_tries")}
    journal = ws.begin("rubrics", config, input_sha=ws.sha(METADATA))
    assert journal is not None
    items = [Item(record_id(i, m), i, m) for i, m in enumerate(pool)]
    run, usage = await map_stage(journal, "rubrics", items,
                                 CodecStage.of("rubrics", ctx, models), models, options)
    result = _result("rubrics", journal, run)
    if not run.interrupted:
        result.outputs[RUBRICS] = ws.publish(RUBRICS, _flat(journal.rows(OK)))
        ws.publish_rejects("rubrics", journal)
    ws.finish("rubrics", stats=usage)
    return result


def load_actions(ws: Workspace) -> dict[str, list[str]]:
    actions: dict[str, list[str]] = {}
    for _, row in ws.rows(RUBRICS, made_by="rubrics"):
        actions[str(row["metadata_id"])] = list(row.get("actions") or [])
    return actions


def load_candidates(ws: Workspace, name: str, made_by: str) -> list[Item]:
    items = []
    for idx, (_, row) in enumerate(ws.rows(name, made_by=made_by)):
        items.append(Item(record_id(idx, row), idx, row))
    return items


def base_items(ws: Workspace) -> list[Item]:
    """Decoded instructions as iteration-1 candidates, in instructions.jsonl order."""
    return [Item(i.id, i.idx, base_candidate(i.record))
            for i in load_candidates(ws, INSTRUCTIONS, "decode")]


def loop_config(ctx: Ctx) -> dict[str, Any]:
    """What the verdicts depend on: changing any of these is a different loop."""
    return {"strong": ctx.strong.identity, "target": ctx.need_target().identity,
            "prompt": ctx.prompts.sha256("improve"), **ctx.judge.config(),
            **ctx.cfg.subset("temperature", "answer_temperature", "max_tokens", "theta",
                             "max_iterations", "seed", "parse_tries")}
