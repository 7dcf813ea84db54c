"""The CodecLM stages before Contrastive Filtering, each as a plan for the run driver.

`encode` → the metadata pool (a pass over encoded.jsonl) → `decode` (+ the near-duplicate
pass) → `rubrics`. Each `*_plan` builds a driver.Plan from the live context
(`StepContext`: the clients, settings and prompts), so `generate` and the stage commands
run the very same plans. The work per record is a `CodecStage` (the stage contract of
stages/base.py): plain settings, the step's clients built in `setup`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.codeclm import steps
from synthcodec.codeclm.config import CodecConfig
from synthcodec.codeclm.files import (
    ENCODED,
    INSTRUCTIONS,
    METADATA,
    RUBRICS,
    SEED_FIELDS,
    edited_by_hand,
    kept_rows,
    publish,
    publish_rejects,
    rows,
    sha,
)
from synthcodec.codeclm.pool import build_pool, check_pool
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.rouge import NearDuplicateFilter
from synthcodec.codeclm.steps import StepContext, step_context
from synthcodec.driver import Plan, Published
from synthcodec.errors import EveryRecordFailed
from synthcodec.executors import Item, StepResult
from synthcodec.io import extract, iter_rows, scan_input
from synthcodec.judging.pairwise import JudgeSettings
from synthcodec.records import META, Record, record_id
from synthcodec.session import Models
from synthcodec.stages.base import ModelStage
from synthcodec.store import REJECTED, Journal, RunDir, hash_file

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
    def of(cls, step: str, ctx: StepContext, models: Models, name: str = "",
           actions: Mapping[str, list[str]] | None = None) -> "CodecStage":
        """The stage for `step` with the settings of `ctx` (what the pipeline resolved)."""
        return cls(step=step, cfg=ctx.cfg, prompts=ctx.prompts, judge=ctx.judge,
                   strong=models.specs.get("strong", ""), target=models.specs.get("target"),
                   actions=dict(actions or {}), name=name)

    async def setup(self, models: Models) -> None:
        self._ctx = step_context(models, self.cfg, self.prompts or Prompts.load(None), self.judge)

    async def run(self, record: Record) -> StepResult:
        fn = getattr(steps, self.step)
        if self.step in STEPS_WITH_ACTIONS:
            return await fn(self._ctx, record, self.actions.get(str(record["metadata_id"]), []))
        return await fn(self._ctx, record)


def publish_as(name: str, stage: str):  # type: ignore[no-untyped-def]
    """A plan's publishing: its kept rows as RUN/name, its dropped ones in rejects/ (nothing,
    when it stopped early: the next run finishes it)."""

    def publish_stage(run: RunDir, journal: Journal | None, stopped: bool) -> Published:
        assert journal is not None
        if stopped:
            return Published({})
        n = publish(run, name, kept_rows(journal))
        publish_rejects(run, stage, journal)
        return Published({name: n})

    return publish_stage


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


def encode_plan(ctx: StepContext, models: Models, seeds: str, mapping: Mapping[str, str],
                limit: int | None) -> Plan:
    """Every seed's use case and skills -> RUN/encoded.jsonl."""
    items = seed_items(seeds, mapping, limit)
    settings = {"seeds": str(seeds), "fields": dict(mapping), "limit": limit,
                "strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("encode"),
                **ctx.cfg.subset("temperature", "max_tokens")}
    return Plan(CodecStage.of("encode", ctx, models), lambda: items, len(items),
                settings=settings, input_sha=hash_file(seeds),
                publish=publish_as(ENCODED, "encode"), info=lambda: {"seeds": len(items)})


# --------------------------------------------------------------------------- metadata

def metadata_plan(run: RunDir, cfg: CodecConfig, overwrite: bool) -> Plan:
    """The metadata pool (a pass over encoded.jsonl) -> RUN/metadata.jsonl, unless the user
    wrote or edited that file: then it is used as it is (--overwrite rebuilds it)."""
    settings = cfg.subset("pool_size", "seed")
    if edited_by_hand(run, METADATA) and not overwrite:
        def as_written(run: RunDir, journal: Journal | None, stopped: bool) -> Published:
            pool = load_metadata(run.path)
            run.ledger.finish("metadata", config=settings, hand_written=True)
            return Published({}, notes=[
                f"{run.path / METADATA} was written or edited by hand: using its "
                f"{len(pool)} entries as they are (--overwrite rebuilds it)"])

        return Plan(None, lambda: [], 0, name="metadata", publish=as_written)

    info: dict[str, Any] = {}

    def build(run: RunDir, journal: Journal | None, stopped: bool) -> Published:
        encoded = [row for _, row in rows(run.path, ENCODED,
                                          made_by="encode SEEDS --strong MODEL -o")]
        if not encoded:
            raise EveryRecordFailed(f"no seed was encoded (reasons in "
                                    f"{run.path / 'rejects/encode.jsonl'}): nothing to build "
                                    "a metadata pool from")
        pool = build_pool(encoded, cfg.pool_size, cfg.seed)
        observed = sum(1 for e in pool if e["source"] == "observed")
        info.update(observed=observed, mixed=len(pool) - observed, hand_written=False)
        notes = []
        if len(pool) < cfg.pool_size:
            notes.append(f"metadata pool has {len(pool)} entries, fewer than --size "
                         f"{cfg.pool_size}: the seeds' skills allow no more distinct pairs")
        return Published({METADATA: publish(run, METADATA, pool)}, notes=notes)

    return Plan(None, lambda: [], 0, name="metadata", publish=build, settings=settings,
                input_sha=sha(run.path, ENCODED), info=lambda: info)


def load_metadata(path: Path) -> list[Record]:
    return check_pool(str(path / METADATA), rows(path, METADATA, made_by="metadata"))


# --------------------------------------------------------------------------- decode

def decode_plan(ctx: StepContext, models: Models, path: Path, draws: Sequence[int] = ()) -> Plan:
    """Base instructions from the pool entries drawn so far: `draws` are the growing pool
    sizes `generate` drew (empty: the whole pool). A larger draw decodes only the entries
    added (the journal keeps the earlier ones) and appends their instructions."""
    pool = load_metadata(path)
    block = {m["id"]: bisect_right(draws, i) for i, m in enumerate(pool)}
    pool = pool[:draws[-1]] if draws else pool
    settings = {"strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("decode"),
                **ctx.cfg.subset("temperature", "max_tokens", "per_metadata", "parse_tries",
                                 "rouge_threshold")}
    items = [Item(record_id(i, m), i, m) for i, m in enumerate(pool)]
    info: dict[str, Any] = {}
    threshold = ctx.cfg.rouge_threshold

    def dedupe(run: RunDir, journal: Journal | None, stopped: bool) -> Published:
        assert journal is not None
        if stopped:
            return Published({})
        kept, dropped = dedupe_instructions(kept_rows(journal), threshold, block)
        outputs = {INSTRUCTIONS: publish(run, INSTRUCTIONS, kept)}
        publish_rejects(run, "decode", journal)
        if dropped:
            (run.path / "rejects").mkdir(exist_ok=True)
            run.publish_jsonl("rejects/decode_duplicates.jsonl", dropped)
        info["near_duplicates"] = len(dropped)
        return Published(outputs, notes=[f"decode: {len(dropped)} near-duplicate base "
                                         f"instructions removed (ROUGE-L > {threshold:g})"])

    return Plan(CodecStage.of("decode", ctx, models), lambda: items, len(items),
                settings=settings, input_sha=sha(path, METADATA), publish=dedupe,
                info=lambda: info)


def dedupe_instructions(decoded: list[Record], threshold: float,
                        block: Mapping[str, int] | None = None
                        ) -> tuple[list[Record], list[Record]]:
    """Round-robin order (the k-th instruction of every entry before any (k+1)-th), so a run
    stopped at n kept pairs covers the pool evenly; near-duplicates of earlier ones dropped
    (in the row envelope of every run: the reason under `_synthcodec`). `block`: metadata id
    -> the draw it came in; each draw's instructions come after the earlier draws', so the
    file only grows at its end and the loop's journaled records keep their positions."""
    block = block or {}
    # stable: metadata order within each (draw, k)
    ordered = sorted(decoded, key=lambda r: (block.get(r["metadata_id"], 0), r["k"]))
    near = NearDuplicateFilter(threshold)
    kept, dropped = [], []
    for row in ordered:
        if near.add(row["instruction"]):
            kept.append(row)
        else:
            dropped.append({**row, META: {"id": row.get("id"), "status": REJECTED,
                                          "reason": f"near-duplicate (ROUGE-L > {threshold:g})"}})
    return kept, dropped


# --------------------------------------------------------------------------- rubrics

def rubrics_plan(ctx: StepContext, models: Models, path: Path, draws: Sequence[int] = ()) -> Plan:
    """Rubrics and actions for the pool entries drawn so far (as decode; empty: all)."""
    pool = load_metadata(path)[:draws[-1] if draws else None]
    settings = {"strong": ctx.strong.identity, "prompt": ctx.prompts.sha256("rubrics"),
                **ctx.cfg.subset("temperature", "max_tokens", "n_rubrics", "parse_tries")}
    items = [Item(record_id(i, m), i, m) for i, m in enumerate(pool)]
    return Plan(CodecStage.of("rubrics", ctx, models), lambda: items, len(items),
                settings=settings, input_sha=sha(path, METADATA),
                publish=publish_as(RUBRICS, "rubrics"))


def loop_config(ctx: StepContext) -> dict[str, Any]:
    """What the verdicts depend on: changing any of these is a different loop."""
    return {"strong": ctx.strong.identity, "target": ctx.need_target().identity,
            "prompt": ctx.prompts.sha256("improve"), **ctx.judge.config(),
            **ctx.cfg.subset("temperature", "answer_temperature", "max_tokens", "theta",
                             "max_iterations", "seed", "parse_tries")}
