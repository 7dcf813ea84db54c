"""`synthcodec judge-check` on files: what DATA may be, and the whole check over it.

DATA is an instruction file with responses (a rater's data: Alpaca's instruction, input,
output), two answer files A B (a pairwise judge's data, paired as `compare` pairs them), or a
run directory of `rate` or `compare` (its rows and, for a rate run, its prompt, dimension and
answer format, so the check asks exactly what the run asked).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.executors import run_async
from synthcodec.io import iter_rows
from synthcodec.judging.check import Say, run_check, silent, write_card
from synthcodec.judging.check.card import JudgeCard
from synthcodec.judging.check.probes import Sample, samples_from_rows
from synthcodec.judging.pairwise import JudgeSettings
from synthcodec.llm import redact_spec
from synthcodec.prompts import ChatTemplate
from synthcodec.session import Models, RunOptions, check_models
from synthcodec.store import read_json

__all__ = ["CheckSettings", "Source", "check_files", "load_source"]


@dataclass
class Source:
    samples: list[Sample]
    role: str  # what the data is for: "rater" or "pairwise"
    description: str
    judge: str | None = None  # the judge a run directory used
    rate: dict[str, Any] = field(default_factory=dict)  # a rate run's settings


@dataclass
class CheckSettings:
    """How the judge is asked (the options of `rate` and `compare` that change it)."""

    mapping: Mapping[str, str] = field(default_factory=lambda: {"response": "output"})
    key: str | None = None
    answer_field: str | None = None
    question_field: str | None = None
    dimension: str | None = None
    template: str | None = None  # a rating prompt file
    judge_prompt: str | None = None
    json: bool | None = None
    max_tokens: int | None = None  # None: the command's default (rate 256, compare 512)
    reasks: int = 2
    scores: str = "text"
    evidence_first: bool = False


def load_source(data: list[str], settings: CheckSettings) -> Source:
    """Samples from DATA (see the module docstring); UserError for anything else."""
    if len(data) == 2:
        return _pairs(data[0], data[1], settings)
    if len(data) != 1:
        raise UserError(f"give DATA (one file or run directory) or two answer files A B, "
                        f"not {len(data)} paths")
    path = Path(data[0])
    if path.is_dir():
        config = read_json(path / "config.json")
        stage = config.get("stage") if isinstance(config, dict) else None
        judge = (config.get("models") or {}).get("judge") if isinstance(config, dict) else None
        output = path / "output.jsonl"
        if stage == "rate" and output.exists():
            rate = {k: config.get(k) for k in ("dimension", "template", "answer", "max_tokens",
                                              "reasks", "scores")}
            return Source(samples_from_rows(output, config.get("fields") or {}), "rater",
                          f"the rows of the rate run {path}", judge, rate)
        if stage == "judge" and output.exists():
            samples = [Sample(f"line {line}", row["question"], "", row["answer_a"],
                              other=row["answer_b"],
                              id=None if row.get("question_id") is None
                              else str(row["question_id"]))
                       for line, row in iter_rows(output)]
            return Source(samples, "pairwise", f"the pairs of the compare run {path}", judge)
        raise UserError(f"{path} is not a finished rate or compare run (no config.json with "
                        "stage rate or judge and output.jsonl); give a data file instead")
    return Source(samples_from_rows(path, settings.mapping), "rater", f"the rows of {path}")


def _pairs(path_a: str, path_b: str, settings: CheckSettings) -> Source:
    from synthcodec.stages.compare import PairSpec, pair_answers

    key = tuple(k.strip() for k in settings.key.split(",") if k.strip()) if settings.key else None
    pairs = pair_answers("data", path_a, path_b, PairSpec(key=key,
                                                          answer_field=settings.answer_field,
                                                          question_field=settings.question_field))
    samples = [Sample(p.key, p.question, "", p.answer_a, other=p.answer_b,
                      id=None if p.question_id is None else str(p.question_id)) for p in pairs]
    return Source(samples, "pairwise", f"the pairs of {path_a} and {path_b}")


def check_files(data: list[str], out_dir: str | Path, *, judge: str | None, options: RunOptions,
                role: str | None = None, per_kind: int = 20, labels: str | None = None,
                settings: CheckSettings | None = None, say: Say | None = None,
                backends: Mapping[str, Any] | None = None) -> JudgeCard:
    """The judge card of `judge` on DATA, written to OUT_DIR/judge_card.{json,md}; `say`
    hears what the check will send before it sends it (nothing is printed here)."""
    settings = settings or CheckSettings()
    source = load_source(data, settings)
    role = role or source.role  # either judge can be probed with either kind of data
    judge = judge or source.judge or "local"
    check_models({"judge": judge}, backends, options)
    options.check_cache()
    shown = redact_spec(judge)

    async def main() -> JudgeCard:
        models = Models.open({"judge": judge}, options, backends)
        try:
            client = models["judge"]
            if role == "rater":
                return await run_check(source.samples, per_kind, judge=shown,
                                       data=source.description, rater=_rater(models, source,
                                                                              settings),
                                       labels=labels, progress=options.progress,
                                       say=say or silent)
            from synthcodec.judging.pairwise import load_judge_template

            pair = JudgeSettings(template=load_judge_template(
                settings.judge_prompt, evidence_first=settings.evidence_first),
                                 max_tokens=settings.max_tokens or 512,
                                 reasks=settings.reasks, json=settings.json,
                                 scores=settings.scores, evidence_first=settings.evidence_first)
            return await run_check(source.samples, per_kind, judge=shown,
                                   data=source.description, client=client, settings=pair,
                                   labels=labels, progress=options.progress,
                                   say=say or silent)
        finally:
            await models.aclose()

    card = run_async(main())
    write_card(card, out_dir)
    return card


def _rater(models: Models, source: Source, settings: CheckSettings) -> Any:
    from synthcodec.stages.rate import RateStage, rating_template

    run = source.rate
    template = rating_template(settings.template) if settings.template or not run.get("template") \
        else ChatTemplate.parse(run["template"], "the rate run's template")
    answer = run.get("answer")
    json = settings.json if settings.json is not None else \
        {"json": True, "text": False}.get(answer or "auto")
    stage = RateStage(judge="", template=template,
                      dimension=settings.dimension or run.get("dimension") or "accuracy",
                      json=json, reasks=settings.reasks,
                      max_tokens=settings.max_tokens or run.get("max_tokens") or 256,
                      scores=settings.scores if settings.scores != "text"
                      else run.get("scores") or "text")
    return stage.rater(models)
