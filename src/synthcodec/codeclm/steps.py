"""The CodecLM steps: async functions of one record, free of files and executors.

Each takes a `StepContext` (clients, settings, prompts) and a record, and returns output rows or
raises `Reject` (a decision, kept with its reason) / `RecordFailed` (retried next run).
The loop step `evolve` chains improve -> respond -> contrast for one base instruction.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from synthcodec.codeclm.config import CodecConfig
from synthcodec.codeclm.prompts import (
    EncodedMetadata,
    Prompts,
    answer_request,
    decode_request,
    encode_request,
    improve_request,
    parse_instructions,
    parse_rewrite,
    parse_rubric_actions,
    rubrics_request,
)
from synthcodec.executors import Reject
from synthcodec.judging.pairwise import JudgeSettings, judge_both_orders
from synthcodec.llm.client import LLMClient
from synthcodec.parsing import ParseError
from synthcodec.records import Record

if TYPE_CHECKING:
    from synthcodec.session import Models

KEEP_STRONG, KEEP_TARGET, IMPROVE, UNRESOLVED = "keep_strong", "keep_target", "improve", "unresolved"
NEAR_DUPLICATE = "near_duplicate"  # a kept pair too close to an earlier kept one (ROUGE-L)


@dataclass
class StepContext:
    """What the steps need: the models, the settings and the prompt templates."""

    strong: LLMClient
    cfg: CodecConfig
    prompts: Prompts
    target: LLMClient | None = None
    judge: JudgeSettings = field(default_factory=JudgeSettings)

    def need_target(self) -> LLMClient:
        if self.target is None:
            raise RuntimeError("this step needs the target model")
        return self.target


def step_context(models: Models, cfg: CodecConfig, prompts: Prompts,
             judge: JudgeSettings | None = None) -> StepContext:
    """The steps' context from the live clients (`judge`: else from `cfg`)."""
    strong = models["strong"]
    # The answer format is decided here for the strong model (the judge), so the loop's
    # config records "json" or "text", never "auto".
    judge = judge or JudgeSettings(max_tokens=cfg.judge_max_tokens, reasks=cfg.judge_reasks,
                                   json=cfg.judge_json, scores=cfg.judge_scores,
                                   evidence_first=cfg.judge_evidence_first)
    return StepContext(strong=strong, target=models.clients.get("target"), cfg=cfg, prompts=prompts,
               judge=judge.for_backend(strong.backend))


LINEAGE = ("metadata_id", "seed_ids", "use_case", "skills")


def lineage(record: Record) -> Record:
    return {k: record[k] for k in LINEAGE if k in record}


# --------------------------------------------------------------------------- encode

async def encode(ctx: StepContext, seed: Record) -> Record:
    """Seed -> {seed_id, instruction, use_case, skills} via validated structured output."""
    request = encode_request(ctx.prompts, seed["instruction"], temperature=ctx.cfg.temperature,
                             max_tokens=ctx.cfg.max_tokens)
    meta = await ctx.strong.structured(request, EncodedMetadata)
    return {"seed_id": str(seed["seed_id"]), "instruction": seed["instruction"],
            "use_case": meta.use_case, "skills": meta.skills}


# --------------------------------------------------------------------------- decode

async def decode(ctx: StepContext, meta: Record) -> list[Record]:
    """Metadata entry -> up to `per_metadata` base instructions (numbered list, parsed)."""
    cfg, problem = ctx.cfg, ""
    if cfg.per_metadata is None:
        raise ValueError("decode needs cfg.per_metadata")
    for sample in range(cfg.parse_tries):  # an unparsable list is resampled, not re-asked
        request = decode_request(ctx.prompts, meta["use_case"], meta["skills"], cfg.per_metadata,
                                 temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                 sample=sample)
        completion = await ctx.strong.complete(request, allow_truncated=True)
        try:
            items = parse_instructions(completion.text, cfg.per_metadata,
                                       truncated=completion.finish_reason == "length")
        except ParseError as exc:
            problem = exc.reason
            continue
        return [{"id": f"{meta['id']}-i{k}", "k": k, "instruction": text,
                 "metadata_id": meta["id"], **_meta_lineage(meta)}
                for k, text in enumerate(items)]
    raise Reject(f"decode: {problem} ({cfg.parse_tries} samples)",
                 {"metadata_id": meta["id"], **_meta_lineage(meta)})


def _meta_lineage(meta: Record) -> Record:
    return {"seed_ids": meta.get("seed_ids", []), "use_case": meta["use_case"],
            "skills": meta["skills"]}


# --------------------------------------------------------------------------- rubrics

async def rubrics(ctx: StepContext, meta: Record) -> Record:
    """Metadata entry -> {metadata_id, rubrics, actions} (Self-Rubrics)."""
    cfg, problem = ctx.cfg, ""
    for sample in range(cfg.parse_tries):
        request = rubrics_request(ctx.prompts, meta["use_case"], meta["skills"], cfg.n_rubrics,
                                  temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                  sample=sample)
        completion = await ctx.strong.complete(request, allow_truncated=True)
        try:
            found, actions = parse_rubric_actions(completion.text, cfg.n_rubrics)
        except ParseError as exc:
            problem = exc.reason
            continue
        return {"metadata_id": meta["id"], "use_case": meta["use_case"], "skills": meta["skills"],
                "rubrics": found, "actions": actions}
    raise Reject(f"rubrics: {problem} ({cfg.parse_tries} samples)", {"metadata_id": meta["id"]})


# --------------------------------------------------------------------------- improve

def choose_action(actions: list[str], seed: int, instruction_id: str, iteration: int) -> str:
    """One action at random, reproducibly: the same record and round always pick the same one."""
    return random.Random(f"{seed}:{instruction_id}:{iteration}").choice(actions)


async def improve(ctx: StepContext, cand: Record, actions: list[str]) -> Record:
    """Rewrite the candidate's instruction following one random action: the next iteration."""
    if not actions:
        raise Reject("no rubric actions for this metadata entry, so it cannot be improved",
                     cand)
    cfg = ctx.cfg
    iteration = int(cand["iteration"]) + 1
    action = choose_action(actions, cfg.seed, cand["id"], iteration)
    problem = ""
    for sample in range(cfg.parse_tries):
        request = improve_request(ctx.prompts, cand["instruction"], action, cand["use_case"],
                                  cand["skills"], temperature=cfg.temperature,
                                  max_tokens=cfg.max_tokens, sample=sample)
        completion = await ctx.strong.complete(request)
        try:
            rewritten = parse_rewrite(completion.text)
        except ParseError as exc:
            problem = exc.reason
            continue
        return {"id": cand["id"], "instruction": rewritten,
                "base_instruction": cand.get("base_instruction", cand["instruction"]),
                "iteration": iteration, "action": action, **lineage(cand),
                "history": [*cand.get("history", []), history_entry(cand)]}
    raise Reject(f"improve: {problem} ({cfg.parse_tries} samples)", {**cand, "action": action})


# --------------------------------------------------------------------------- respond

async def respond(ctx: StepContext, cand: Record) -> Record:
    """Strong and target answers to the candidate instruction."""
    cfg = ctx.cfg
    # Sample 1 for the target: a distinct draw even when strong and target are one model.
    strong, target = await asyncio.gather(
        ctx.strong.complete(answer_request(cand["instruction"], temperature=cfg.answer_temperature,
                                           max_tokens=cfg.max_tokens), allow_truncated=True),
        ctx.need_target().complete(
            answer_request(cand["instruction"], temperature=cfg.answer_temperature,
                           max_tokens=cfg.max_tokens, sample=1), allow_truncated=True))
    return {**cand, "strong_answer": strong.text, "target_answer": target.text,
            "strong_truncated": strong.finish_reason == "length",
            "target_truncated": target.finish_reason == "length",
            # Reasoning models' traces: lineage, never the kept response (llm/reasoning.py).
            **({"answer_reasoning": {"strong": strong.reasoning, "target": target.reasoning}}
               if strong.reasoning or target.reasoning else {})}


# --------------------------------------------------------------------------- contrast

def decide(gap: float, theta: float, iteration: int, max_iterations: int) -> str:
    """Keep when |G| > theta (with the better answer); else improve, or give up after the last."""
    if gap > theta:
        return KEEP_STRONG
    if gap < -theta:
        return KEEP_TARGET
    return IMPROVE if iteration < max_iterations else UNRESOLVED


async def contrast(ctx: StepContext, answered: Record) -> Record:
    """Pairwise scores in both orders, averaged; gap G = S(strong) - S(target); the decision."""
    both = await judge_both_orders(ctx.strong, answered["instruction"], answered["strong_answer"],
                                   answered["target_answer"], ctx.judge)
    gap = both.gap
    decision = decide(gap, ctx.cfg.theta, int(answered["iteration"]), ctx.cfg.max_iterations)
    row = {
        **answered,
        "scores": {  # A = strong, B = target; "first" = strong shown as Assistant 1
            "strong_first": {"strong": both.s_a_first, "target": both.s_b_first},
            "target_first": {"strong": both.s_a_second, "target": both.s_b_second},
        },
        "judge_text": {"strong_first": both.first.text, "target_first": both.second.text},
        **({"judge_reasoning": {"strong_first": both.first.reasoning,
                                "target_first": both.second.reasoning}}
           if both.first.reasoning or both.second.reasoning else {}),
        "strong_score": both.mean_a,
        "target_score": both.mean_b,
        "gap": gap,
        "decision": decision,
    }
    if decision == KEEP_STRONG:
        row["response"] = answered["strong_answer"]
    elif decision == KEEP_TARGET:
        row["response"] = answered["target_answer"]
    return row


# --------------------------------------------------------------------------- the loop

def history_entry(row: Record) -> Record:
    """A judged iteration, compact, for the lineage of the row that follows it."""
    keys = ("iteration", "instruction", "action", "strong_score", "target_score", "gap",
            "decision", "scores", "judge_text")
    return {k: row.get(k) for k in keys}


async def evolve(ctx: StepContext, base: Record, actions: list[str]) -> Record:
    """One base instruction through up to `max_iterations` rounds of Contrastive Filtering.

    Round 1 judges the base instruction itself (methods.md §1.5: filter before rewriting);
    each later round rewrites the last instruction with one random action first. The
    judged iterations before the final one travel along in `history`.
    """
    cand = base_candidate(base)
    while True:
        judged = await contrast(ctx, await respond(ctx, cand))
        if judged["decision"] in (KEEP_STRONG, KEEP_TARGET):
            return judged
        if judged["decision"] == UNRESOLVED:
            raise Reject(unresolved_reason(ctx.cfg), judged)
        cand = await improve(ctx, judged, actions)


def unresolved_reason(cfg: CodecConfig) -> str:
    """Why an instruction judged in every iteration without a clear gap is rejected."""
    return f"unresolved: |gap| <= {cfg.theta:g} in all {cfg.max_iterations} iterations"


def base_candidate(row: Record) -> Record:
    """A decoded instruction as the candidate of iteration 1."""
    return {**row, "iteration": 1, "action": None, "base_instruction": row["instruction"],
            "history": []}
