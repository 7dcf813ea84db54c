"""Every CodecLM number in one place, with the paper's defaults (methods.md §1)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from synthcodec.errors import UserError


@dataclass(frozen=True)
class CodecConfig:
    """Knobs of CodecLM generation; each is a CLI option and a recipe key."""

    temperature: float = 0.7  # encode / decode / rubrics / improve (paper)
    # The paper does not say how answers are sampled; 0.7 gives the target's typical
    # answer rather than its single best one. The target's request is always sample 1, so
    # the two answers are distinct draws even when strong == target.
    answer_temperature: float = 0.7
    max_tokens: int = 2048  # paper
    judge_max_tokens: int = 256  # the scores are on the first line; the rest is explanation
    judge_reasks: int = 2  # re-asks when a judgement has no readable pair of scores
    # Judge answers as JSON (a schema) or the paper's score line; None: JSON for llama.cpp
    # judges (the grammar makes even a tiny model write two scores), text for HTTP ones.
    judge_json: bool | None = None
    # The judge's scores as written ("text") or probability-weighted ("logprobs", G-Eval).
    judge_scores: str = "text"
    judge_evidence_first: bool = False  # the judge explains first, scores last
    pool_size: int = 200  # metadata pool (paper)
    # Base instructions decoded per metadata entry; None: `generate` derives it from n.
    per_metadata: int | None = None
    n_rubrics: int = 4  # rubrics and actions per metadata entry (paper)
    max_iterations: int = 4  # counting the base instruction (paper)
    theta: float = 3.0  # keep when |S(strong) - S(target)| > theta, on the 1-10 scale (paper)
    rouge_threshold: float = 0.7  # near-duplicate: ROUGE-L F above this (Self-Instruct)
    seed: int = 0  # metadata mix-and-match and the choice of improve action
    parse_tries: int = 3  # distinct samples tried when a list or score cannot be parsed

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
