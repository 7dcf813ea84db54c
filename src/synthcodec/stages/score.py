"""`synthcodec score`: add selection signals to every (instruction, input, response) row.

- `ifd`: Instruction-Following Difficulty (Cherry LLM, Li et al. 2024; Superfiltering, Li et
  al. 2024 computes it with a 124M model): the model's mean loss on the response after the
  instruction, divided by its mean loss on the response alone. Both are measured in the
  model's chat template, as generation would prompt it: the user turn holds the instruction
  (and input) or is empty, the response is the assistant's reply; the ratio then isolates
  what the instruction tells the model about its answer. IFD ≥ 1 (the instruction does not
  help) is flagged in `ifd_ge_1`, as the papers do; selection drops those rows.
- `target_ifd`: the same, computed by the model being tuned (`--target`): Cherry's
  self-guided form, a selection tailored to that model.
- `length`: the response's length in tokens (words and punctuation marks, model-free, so
  the "longest k" baseline needs no model); `random`: a seeded key per row (the row's
  content hashed with the seed), so the random baseline is a column like any other.

The model calls go through LLMClient (cache, limits, retries): two per row and model, each
the log-probabilities of the given response (llm.base.ContinuationRequest).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.driver import Summary, run_file_stage
from synthcodec.errors import UserError
from synthcodec.executors import Reject
from synthcodec.formats import EXAMPLE_FIELDS, join_instruction
from synthcodec.llm.base import ContinuationRequest
from synthcodec.llm.client import LLMClient
from synthcodec.records import Record
from synthcodec.session import Models, RunOptions
from synthcodec.settings import setting
from synthcodec.stages.base import ModelStage
from synthcodec.stages.rate import DEFAULT_FIELDS

SIGNALS = ("ifd", "target_ifd", "length", "random")
DEFAULT_SIGNALS = ("ifd", "length", "random")
IFD_SIGNALS = ("ifd", "target_ifd")  # flagged, and left out by select, at 1 and above
# Which model computes which IFD signal: the role it has in the run.
IFD_ROLES = {"ifd": "scorer", "target_ifd": "target"}
# An IFD signal's columns: the signal's name and these after it (ifd, ifd_ge_1, ...).
_IFD_SUFFIXES = ("", "_ge_1", "_conditioned_loss", "_direct_loss")
# How the prompts are built: part of the config, so a change here starts runs afresh.
IFD_PROMPTS = "chat template; user turn = instruction (+ blank line + input), or empty"
_WORDS = re.compile(r"\w+|[^\w\s]")


def response_length(response: str) -> int:
    """Tokens of the response: words and punctuation marks (no model needed)."""
    return len(_WORDS.findall(response))


def random_key(seed: int, instruction: str, input_text: str, response: str) -> float:
    """A number in [0, 1) fixed by the seed and the row's content (not its position)."""
    blob = "\0".join((str(seed), instruction, input_text or "", response)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") / 2 ** 64


def mean_loss(logprobs: list[float]) -> float:
    """The mean negative log-likelihood per token."""
    return -sum(logprobs) / len(logprobs)


def ifd_columns(signal: str, conditioned: float, direct: float) -> dict[str, Any]:
    """The columns of one IFD signal: the ratio, its flag and the two losses it divides
    (`target_ifd`'s names start with target_)."""
    ifd = conditioned / direct
    values = (round(ifd, 6), ifd >= 1.0, round(conditioned, 6), round(direct, 6))
    return {signal + suffix: v for suffix, v in zip(_IFD_SUFFIXES, values)}


def columns_of(signals: tuple[str, ...]) -> tuple[str, ...]:
    """The columns `signals` add to each row."""
    return tuple(signal + suffix for signal in signals
                 for suffix in (_IFD_SUFFIXES if signal in IFD_ROLES else ("",)))


def parse_signals(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`ifd,length` (or a list) -> the signals in SIGNALS order; UserError for unknown ones."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {s.strip() for s in items if s.strip()}
    unknown = sorted(names - set(SIGNALS))
    if unknown:
        raise UserError(f"--signals: unknown signal {unknown[0]!r}; use {', '.join(SIGNALS)}")
    if not names:
        raise UserError(f"--signals: give at least one of {', '.join(SIGNALS)}")
    return tuple(s for s in SIGNALS if s in names)


async def ifd(client: LLMClient, instruction: str, input_text: str, response: str
              ) -> tuple[float, float]:
    """(loss of the response after the instruction, loss of the response alone)."""
    if not response.strip():
        raise Reject("empty response: there is nothing to score")
    asked = ({"role": "user", "content": join_instruction(instruction, input_text)},)
    alone = ({"role": "user", "content": ""},)
    conditioned = await client.continuation_logprobs(ContinuationRequest(asked, response))
    direct = await client.continuation_logprobs(ContinuationRequest(alone, response))
    if not conditioned or not direct:
        raise Reject("the response has no tokens for this model")
    loss_alone = mean_loss(direct)
    if loss_alone <= 0:
        raise Reject("the response alone has zero loss: IFD is undefined")
    return mean_loss(conditioned), loss_alone


@dataclass
class ScoreStage(ModelStage):
    """Selection signals of one (instruction, input, response) row."""

    # Each setting is its `score` option, recipe key and API keyword (synthcodec.settings).
    signals: tuple[str, ...] = setting(  # on the command line: comma-separated
        DEFAULT_SIGNALS, "--signals", type=str, help=f"Comma-separated: {', '.join(SIGNALS)}.")
    model: str = setting(  # computes `ifd`
        "local", "--model", "-m", type=str,
        help="The model that computes ifd (Superfiltering: a small one is enough).")
    target: str | None = setting(  # computes `target_ifd`
        None, "--target", type=str, metavar="MODEL",
        help="The model you will tune: computes target_ifd (a selection tailored to it).")
    seed: int = setting(0, "--seed", type=int, help="Seed of the random key.")
    name: str = "score"

    def __post_init__(self) -> None:
        self.signals = parse_signals(self.signals)
        if "target_ifd" in self.signals and not self.target:
            raise UserError("the target_ifd signal needs --target MODEL (the model to be tuned)")
        specs = {"ifd": self.model, "target_ifd": self.target}
        self.roles = {IFD_ROLES[s]: specs[s] for s in self.signals  # type: ignore[misc]
                      if s in IFD_ROLES}

    def config(self) -> dict[str, Any]:
        return {"signals": list(self.signals), "seed": self.seed,
                **({"ifd_prompts": IFD_PROMPTS} if self.roles else {})}

    async def setup(self, models: Models) -> None:
        self._clients: dict[str, LLMClient] = {}
        for signal in self.signals:
            if signal not in IFD_ROLES:
                continue
            client = models[IFD_ROLES[signal]]
            if not getattr(client.backend, "scores_continuations", False):
                raise UserError(f"{signal}: {client.identity} cannot give the log-probabilities "
                                "of a given response; use the embedded model (local), gguf:, "
                                "hf: or a vLLM server")
            self._clients[signal] = client

    async def run(self, record: Record) -> Record:
        instruction, response = record["instruction"], record["response"]
        input_text = record.get("input") or ""
        out: dict[str, Any] = {}
        for signal in self.signals:
            if signal in IFD_ROLES:
                out.update(ifd_columns(signal, *await ifd(self._clients[signal], instruction,
                                                          input_text, response)))
            elif signal == "length":
                out["length"] = response_length(response)
            else:
                out["random"] = random_key(self.seed, instruction, input_text, response)
        return out


def score_file(input_path: str | Path, run_dir: str | Path, *, options: RunOptions,
               signals: tuple[str, ...] | str = DEFAULT_SIGNALS, model: str = "local",
               target: str | None = None, seed: int = 0,
               mapping: Mapping[str, str] | None = None,
               backends: Mapping[str, Any] | None = None) -> Summary:
    """Score every row of `input_path` into `run_dir` (resuming it); what the command runs.

    `backends={"scorer": ..., "target": ...}` replaces the models by role (e.g. a FakeBackend).
    """
    stage = ScoreStage(signals=parse_signals(signals), model=model, target=target, seed=seed)
    return run_file_stage(
        input_path=input_path, run_dir=run_dir, stage=stage, fields=list(EXAMPLE_FIELDS),
        mapping=dict(DEFAULT_FIELDS if mapping is None else mapping), options=options,
        backends=backends, adds=columns_of(stage.signals),
        adds_hint="rename or drop it first (e.g. the rows of an earlier scoring)")
