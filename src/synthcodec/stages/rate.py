"""`synthcodec rate`: score every (instruction, input, response) row 0–5 with an LLM judge.

The AlpaGasus rater (Chen et al., ICLR 2024; methods.md §2.1). The untrusted triplet is
fenced (synthcodec.judging.fence) so a response cannot pose as instructions or as the judge's
verdict. Free-text replies are read with `parsing.parse_rating`; JSON replies are validated
against `Rating`. An unreadable reply is re-asked a bounded number of times and then the
row is quarantined in RUN/failed.jsonl with the reason: never a silent default score.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, Field, ValidationError

from synthcodec.driver import Summary, run_file_stage
from synthcodec.errors import UserError
from synthcodec.executors import Reject
from synthcodec.formats import EXAMPLE_FIELDS
from synthcodec.io import iter_rows, parse_field_map
from synthcodec.judging.check import PRE_CHECK_PROBES, Say, manifest_entry, pre_check, silent
from synthcodec.judging.check.probes import samples_from_rows
from synthcodec.judging.expected_score import (
    SCORE_ALTERNATIVES,
    SCORES_CHOICES,
    SCORES_HELP,
    weighted_scores,
)
from synthcodec.judging.fence import FENCE_NOTICE, boundary_for, fence, strip_code_fence
from synthcodec.judging.pairwise import wants_json, wants_logprobs
from synthcodec.llm import Completion, Request, redact_spec
from synthcodec.llm.client import LLMClient
from synthcodec.parsing import ParseError, parse_rating
from synthcodec.prompts import ChatTemplate, load_template
from synthcodec.records import Record
from synthcodec.report.histogram import score_bins, text_histogram
from synthcodec.session import Models, RunOptions
from synthcodec.settings import setting
from synthcodec.stages.base import ModelStage, reasoning_fields

SCALE_LOW, SCALE_HIGH = 0.0, 5.0
TEMPLATE_NAME = "rate.txt"
PLACEHOLDERS = ("dimension", "fence_notice", "triplet", "instruction", "input", "response",
                "answer_format")
CHECK_ROWS = 500  # the judge check before a run probes rows among the first this many
DEFAULT_FIELDS = {"response": "output"}  # Alpaca names the response 'output'
FIELD_ALIASES = {"output": "response"}  # `--field output=answer` means the response too
# Columns added to every rated row.
SCORE, EXPLANATION, JUDGE_TEXT = "score", "explanation", "judge_text"
# ... and with --scores logprobs: the score as written, and which of the two `score` is.
SCORE_SAMPLED, SCORE_FROM = "score_sampled", "score_from"
# With --scores logprobs only the score is generated: `{"score": 4.5, "` is 9 tokens for
# SmolLM2's tokenizer (one per digit), "4.5" and a newline 4.
LOGPROB_MAX_TOKENS = {True: 12, False: 6}

TEXT_ANSWER = ("Give the score alone on the first line (a number from 0 to 5; halves such as "
               "3.5 are fine), then an unbiased explanation on the following lines.")
JSON_ANSWER = ('Reply with only a JSON object with two keys: "score" (a number from 0 to 5; '
               'halves such as 3.5 are fine) and "explanation" (an unbiased explanation of '
               "the score).")


class Rating(BaseModel):
    """The JSON reply asked for with --json."""

    score: float = Field(ge=SCALE_LOW, le=SCALE_HIGH, description="0 to 5, higher is better")
    explanation: str = Field(description="why the response earns this score")


# Sent as the explanation's maxLength: a grammar-constrained backend (llama.cpp) must then
# close the string, where a tiny model would otherwise ramble until max_tokens. Not enforced
# when validating, so a server that ignores it never fails a row for a long explanation.
EXPLANATION_MAX_CHARS = 400
# A reply cut off after `{"score": 4.5,` still carries a complete score (the comma proves it).
_TRUNCATED_JSON_SCORE = re.compile(
    r'^\s*(?:```(?:json)?\s*)?\{\s*"score"\s*:\s*(-?\d+(?:\.\d+)?)\s*,'
    r'(?:\s*"explanation"\s*:\s*"(?P<expl>.*))?', re.DOTALL)


def rating_schema() -> dict[str, Any]:
    schema = Rating.model_json_schema()
    schema["properties"]["explanation"]["maxLength"] = EXPLANATION_MAX_CHARS
    return schema


def parse_json_rating(text: str, truncated: bool) -> tuple[float, str]:
    """(score, explanation) from a JSON reply; a truncated one counts if its score is complete."""
    if truncated:
        match = _TRUNCATED_JSON_SCORE.match(text)
        if match is None:
            raise ParseError("the reply was cut off before its score was complete", text)
        score = float(match.group(1))
        if not SCALE_LOW <= score <= SCALE_HIGH:
            raise ParseError(f"score {score:g} is outside the allowed range 0–5", text)
        return score, _partial_json_string(match.group("expl") or "")
    try:
        rating = Rating.model_validate_json(strip_code_fence(text))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "reply"
        raise ParseError(f"{where}: {first.get('msg')}", text) from None
    return rating.score, rating.explanation.strip()


def _partial_json_string(fragment: str) -> str:
    """Best-effort text of a JSON string cut off mid-way (escapes decoded where complete)."""
    fragment = re.sub(r'\\u[0-9a-fA-F]{0,3}$|\\$', "", fragment)
    try:
        return str(json.loads(f'"{fragment}"')).strip()
    except ValueError:
        return fragment.strip()


@dataclass(frozen=True)
class RatingResult:
    score: float
    explanation: str
    raw: str  # the judge's answer exactly as written (a reasoning trace apart, below)
    tries: int
    reasoning: str = ""
    sampled: float | None = None  # the score as written (`score` may be weighted)
    scores_from: str = "text"  # "logprobs": `score` is the probability-weighted mean


def has_input(value: object) -> bool:
    """Alpaca marks 'no input' with an empty string; treat blank the same way."""
    return isinstance(value, str) and bool(value.strip())


def render_prompt(template: ChatTemplate, *, instruction: str, input_text: str, response: str,
                  dimension: str, json_mode: bool) -> tuple[dict[str, str], ...]:
    """The judge's chat messages, with the untrusted triplet fenced by an unforgeable boundary."""
    given = input_text if has_input(input_text) else ""
    # The boundary is derived from all three texts and occurs in none of them, so no part
    # of the triplet can close its own fence or open a fake one.
    boundary = boundary_for(instruction, given, response)
    blocks = {
        "instruction": fence("INSTRUCTION", instruction, boundary),
        "input": fence("INPUT", given, boundary) if given else "",
        "response": fence("RESPONSE", response, boundary),
    }
    triplet = "\n\n".join(b for b in blocks.values() if b)  # the input block is omitted when empty
    return template.render({
        **blocks,
        "triplet": triplet,
        "dimension": dimension,
        "fence_notice": FENCE_NOTICE,
        "answer_format": JSON_ANSWER if json_mode else TEXT_ANSWER,
    })


def rating_template(path: str | Path | None) -> ChatTemplate:
    """The packaged template or the user's, checked before any work starts."""
    template = load_template(TEMPLATE_NAME, path)
    template.check(PLACEHOLDERS, need_one_of=[("triplet", "response"), ("triplet", "instruction")])
    return template


def correction(problem: str, json_mode: bool = False) -> str:
    how = ("with only a JSON object: {\"score\": a number from 0 to 5, \"explanation\": "
           "a short explanation}" if json_mode else
           "the score alone on the first line, a number from 0 to 5, then your explanation")
    return f"Your reply could not be read as a rating ({problem}). Reply again {how}."


class Rater:
    """Rates one triplet with one judge; shared by `rate` and any recipe that needs ratings."""

    def __init__(self, client: LLMClient, template: ChatTemplate, *, dimension: str,
                 json_mode: bool, reasks: int, max_tokens: int, logprobs: bool = False) -> None:
        self.client = client
        self.template = template
        self.dimension = dimension
        self.json_mode = json_mode
        self.reasks = reasks
        self.max_tokens = max_tokens
        self.logprobs = logprobs  # read the score from token log-probabilities

    def request(self, instruction: str, input_text: str, response: str) -> Request:
        """The first request `rate` sends for this triplet."""
        messages = render_prompt(self.template, instruction=instruction, input_text=input_text,
                                 response=response, dimension=self.dimension,
                                 json_mode=self.json_mode)
        # Temperature 0 as in the paper: ratings should not depend on sampling luck.
        request = Request(messages=messages, temperature=0.0, max_tokens=self.max_tokens,
                          json_schema=rating_schema() if self.json_mode else None)
        if self.logprobs:
            return replace(request, top_logprobs=SCORE_ALTERNATIVES,
                           max_tokens=min(self.max_tokens, LOGPROB_MAX_TOKENS[self.json_mode]))
        return request

    async def rate(self, instruction: str, input_text: str, response: str) -> RatingResult:
        request = self.request(instruction, input_text, response)

        def parse(completion: Completion) -> tuple[float, str, float, str]:
            # The score comes first, so a reply cut off at max_tokens still has a complete
            # score (only the explanation is short): truncation alone is no reason to re-ask.
            if self.json_mode:
                score, explanation = parse_json_rating(completion.text,
                                                       completion.finish_reason == "length")
            else:
                score, explanation = parse_rating(completion.text, SCALE_LOW, SCALE_HIGH)
            if self.logprobs:
                weighted = weighted_scores(completion, ("score",), SCALE_LOW, SCALE_HIGH)
                if weighted is not None:
                    return weighted[0], explanation, score, "logprobs"
            return score, explanation, score, "text"

        asked = await self.client.ask(
            request, parse, reasks=self.reasks, failure="no readable rating",
            correction=lambda problem: correction(problem, self.json_mode))
        score, explanation, sampled, read = asked.value
        return RatingResult(score, explanation, asked.completion.text, asked.attempts,
                            asked.completion.reasoning, sampled=sampled, scores_from=read)


@dataclass
class RateStage(ModelStage):
    """Rate one (instruction, input, response) triplet 0–5 with the judge (AlpaGasus)."""

    # Each setting is its `rate` option, recipe key and API keyword (synthcodec.settings).
    judge: str = setting("local", "--judge", "-m", type=str, help="The rating model (see below).")
    template: ChatTemplate | None = None  # from --template FILE (rating_template)
    dimension: str = setting(
        "accuracy", "--dimension", type=str,
        help="What to rate: accuracy (the paper's main setting), helpfulness, or any text.")
    json: bool | None = setting(  # None: JSON for a grammar-constrained judge, else text
        None, "--json/--text",
        help="Ask for a JSON {score, explanation} (--json) or the score on the first line "
             "(--text). Default: JSON for the embedded model, text for HTTP judges.")
    reasks: int = setting(
        2, "--reasks", type=click.IntRange(0, 10),
        help="Re-ask an unreadable reply this many times, then quarantine the row.")
    max_tokens: int = setting(
        256, "--max-tokens", type=click.IntRange(16),
        help="Longest judge reply (the score comes first, so a cut explanation is fine).")
    scores: str = setting("text", "--scores", type=click.Choice(SCORES_CHOICES),
                          help=SCORES_HELP)  # or "logprobs" (synthcodec.judging.expected_score)
    name: str = "rate"

    def __post_init__(self) -> None:
        self.roles = {"judge": self.judge}
        self.template = self.template or rating_template(None)

    @property
    def adds(self) -> tuple[str, ...]:
        """The columns each rated row gets."""
        extra = (SCORE_SAMPLED, SCORE_FROM) if self.scores == "logprobs" else ()
        return (SCORE, EXPLANATION, JUDGE_TEXT, *extra)

    def config(self) -> dict[str, Any]:
        assert self.template is not None
        config = {"dimension": self.dimension, "template": self.template.text,
                  "answer": {None: "auto", True: "json", False: "text"}[self.json],
                  "reasks": self.reasks, "max_tokens": self.max_tokens, "temperature": 0.0}
        if self.scores != "text":  # absent by default: runs made before the option resume
            config["scores"] = self.scores
        return config

    def rater(self, models: Models) -> Rater:
        """The Rater this stage rates with (the judge check uses the same one)."""
        assert self.template is not None
        client = models["judge"]
        json_mode = wants_json(self.json, client.backend, ("--json", "--text"))
        return Rater(client, self.template, dimension=self.dimension, json_mode=json_mode,
                     reasks=self.reasks, max_tokens=self.max_tokens,
                     logprobs=wants_logprobs(self.scores, client.backend))

    async def setup(self, models: Models) -> None:
        self._rater = self.rater(models)

    async def run(self, record: Record) -> Record:
        for name in ("instruction", "response"):  # a judge would score nothing as something
            if not record[name].strip():
                raise Reject(f"empty {name}: nothing to rate")
        result = await self._rater.rate(record["instruction"], record.get("input") or "",
                                        record["response"])
        row = {SCORE: result.score, EXPLANATION: result.explanation, JUDGE_TEXT: result.raw,
               **reasoning_fields(result.reasoning, key="judge_reasoning")}
        if self.scores == "logprobs":
            row.update({SCORE_SAMPLED: result.sampled, SCORE_FROM: result.scores_from})
        return row


def field_mapping(items: tuple[str, ...] | list[str],
                  defaults: Mapping[str, str] = DEFAULT_FIELDS) -> dict[str, str]:
    """`--field` values over `defaults`; OURS must be instruction, input or response."""
    given = parse_field_map(items)
    mapping = dict(defaults)
    known = {spec.name for spec in EXAMPLE_FIELDS}
    for ours, theirs in given.items():
        ours = FIELD_ALIASES.get(ours, ours)
        if ours not in known:
            raise UserError(f"--field {ours}=...: unknown field; use instruction, input or response")
        mapping[ours] = theirs
    return mapping


def score_lines(output: Path) -> list[str]:
    """The score histogram of the rated rows, read back from RUN/output.jsonl (streamed):
    what `rate` prints after its summary (no lines when nothing was rated)."""
    if not output.exists():
        return []
    bins = score_bins(float(row[SCORE]) for _, row in iter_rows(output))
    if not sum(n for _, n in bins):
        return []
    return ["scores:", *("  " + line for line in text_histogram(bins))]


def rate_file(input_path: str | Path, run_dir: str | Path, *, judge: str, options: RunOptions,
              dimension: str = "accuracy", mapping: Mapping[str, str] | None = None,
              template: ChatTemplate | None = None, json: bool | None = None,
              reasks: int = 2, max_tokens: int = 256, scores: str = "text",
              judge_check: int = PRE_CHECK_PROBES, say: Say | None = None,
              backends: Mapping[str, Any] | None = None) -> Summary:
    """Rate every row of `input_path` into `run_dir` (resuming it); what the command runs.

    First a judge check with `judge_check` probes per kind (0: none) from the input's rows,
    written to RUN/judge_card.{json,md}; `say` hears its cost and verdict (nothing is
    printed here). `backends={"judge": backend}` replaces the model named by `judge`, e.g.
    a FakeBackend.
    """
    mapping = dict(DEFAULT_FIELDS if mapping is None else mapping)
    stage = RateStage(judge=judge, template=template,
                      dimension=dimension, json=json, reasks=reasks,
                      max_tokens=max_tokens, scores=scores)

    async def check_judge(models: Models, run_path: Path) -> dict[str, Any] | None:
        if judge_check <= 0:
            return None
        rows = samples_from_rows(input_path, mapping, max_rows=options.limit or CHECK_ROWS)
        card = await pre_check(rows, judge_check, run_path, judge=redact_spec(judge),
                               data=f"the first {len(rows)} rows of {input_path}",
                               rater=stage.rater(models), say=say or silent)
        return manifest_entry(card)

    return run_file_stage(
        input_path=input_path, run_dir=run_dir, stage=stage, fields=list(EXAMPLE_FIELDS),
        mapping=mapping, options=options, backends=backends, before=check_judge,
        adds=stage.adds,
        adds_hint="rename or drop it first (e.g. the rows of an earlier rating)")
