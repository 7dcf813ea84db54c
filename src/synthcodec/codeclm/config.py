"""Every CodecLM number in one place, with the paper's defaults (methods.md §1)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import click

from synthcodec.errors import UserError
from synthcodec.settings import setting


@dataclass(frozen=True)
class CodecConfig:
    """Knobs of CodecLM generation; each field is its CLI option, recipe key and API keyword
    (synthcodec.settings)."""

    temperature: float = setting(  # encode / decode / rubrics / improve (paper)
        0.7, "--temperature", type=click.FloatRange(0, 2),
        help="Sampling temperature of encode, decode, rubrics and improve.")
    # The paper does not say how answers are sampled; 0.7 gives the target's typical
    # answer rather than its single best one. The target's request is always sample 1, so
    # the two answers are distinct draws even when strong == target.
    answer_temperature: float = setting(
        0.7, "--answer-temperature", type=click.FloatRange(0, 2),
        help="Sampling temperature of the strong and target answers.")
    max_tokens: int = setting(2048, "--max-tokens", type=click.IntRange(1),  # paper
                              help="Max new tokens per generation.")
    judge_max_tokens: int = setting(  # the scores are on the first line; the rest explains
        256, "--judge-max-tokens", type=click.IntRange(1),
        help="Max new tokens per judgement (the scores come first; ~20 tokens in JSON).")
    judge_reasks: int = setting(2, "--judge-reasks", type=click.IntRange(0),
                                help="Re-asks when a judgement has no readable pair of scores.")
    # Judge answers as JSON (a schema) or the paper's score line; None: JSON for llama.cpp
    # judges (the grammar makes even a tiny model write two scores), text for HTTP ones.
    judge_json: bool | None = setting(
        None, "--judge-json/--judge-text",
        help="Ask the judge for JSON {score_1, score_2, explanation} or for the paper's score "
             "line. Default: JSON for the embedded/GGUF judge, text for HTTP ones.")
    # The judge's scores as written ("text") or probability-weighted ("logprobs", G-Eval).
    judge_scores: str = setting(
        "text", "--judge-scores", type=click.Choice(["text", "logprobs"]),
        help="The judge's scores as written, or the probability-weighted mean of the score "
             "tokens (needs token log-probabilities; docs/judging.md).")
    judge_evidence_first: bool = setting(  # the judge explains first, scores last
        False, "--judge-evidence-first/--judge-score-first",
        help="The judge explains first and gives the scores last, or the papers' "
             "scores-first prompt.")
    pool_size: int = setting(200, "--size", type=click.IntRange(1),  # paper
                             help="Metadata pool size.")
    # Base instructions decoded per metadata entry; None: `generate` derives it from n.
    per_metadata: int | None = setting(None, "--per-metadata", type=click.IntRange(1),
                                       help="Base instructions decoded per metadata entry.")
    n_rubrics: int = setting(4, "--rubrics", type=click.IntRange(1),  # paper
                             help="Rubrics (and actions) per metadata entry.")
    max_iterations: int = setting(  # counting the base instruction (paper)
        4, "--max-iterations", type=click.IntRange(1),
        help="Contrastive Filtering rounds per instruction, the base one included.")
    theta: float = setting(  # on the 1-10 scale (paper)
        3.0, "--theta", type=click.FloatRange(0, 9),
        help="Keep a pair when |S(strong) - S(target)| > theta (1-10 scale).")
    rouge_threshold: float = setting(  # Self-Instruct
        0.7, "--rouge-threshold", type=click.FloatRange(0, 1, min_open=True),
        help="Near-duplicate when ROUGE-L F1 with an earlier instruction exceeds this.")
    seed: int = setting(0, "--seed", type=int,
                        help="Random seed: metadata mix-and-match and improve actions.")
    parse_tries: int = setting(  # distinct samples tried when a list or score cannot be parsed
        3, "--parse-tries", type=click.IntRange(1),
        help="Samples tried when a reply cannot be parsed (decode, rubrics, improve).")

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise UserError("--max-iterations must be at least 1 (the base instruction)")
        if self.n_rubrics < 1 or (self.per_metadata or 1) < 1 or self.pool_size < 1:
            raise UserError("--rubrics, --per-metadata and --size must be at least 1")
        if not 0 <= self.theta < 9:
            raise UserError("--theta is a gap on the 1-10 scale: use a value in [0, 9)")
        if not 0 < self.rouge_threshold <= 1:
            raise UserError("--rouge-threshold must be in (0, 1]")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def subset(self, *names: str) -> dict[str, Any]:
        """The settings one stage depends on (its journal is valid only for these)."""
        return {name: getattr(self, name) for name in names}

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def per_metadata_for(n: int, pool_size: int, oversample: float) -> int:
    """Base instructions per metadata entry so that about `oversample * n` are decoded.

    Contrastive Filtering keeps only part of them, so `generate` decodes more than n.
    """
    return max(1, math.ceil(oversample * n / max(1, pool_size)))
