"""The stage contract: what every command's work is, whichever executor runs it.

A stage is a small object built from plain, picklable settings (model specs as strings,
numbers, prompt texts): no client, session or thread is made when it is built. Whoever runs
it (the local executor here; a worker of a distributed executor elsewhere) first awaits
`setup(models)`, which builds what needs live clients, then awaits `run(record)` per record:

- return the output row (or rows);
- raise `executors.Reject(reason)` to drop the record on purpose (rejected, with the reason);
- raise `llm.client.RecordFailed(reason)` when it cannot be done (failed, retried next run).

Anything else is a bug and stops the run. Work across records (stop at n kept, ROUGE-L
dedup, top-k, selection) is a pass over a finished stage's journal, never state in a stage.
`config()` is everything its results depend on: its hash decides whether a run directory
holding this stage can be resumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synthcodec.executors import StepResult
from synthcodec.records import META, Record


class ModelStage:
    """Base of the stages that call models; subclasses set `name` and `roles`."""

    name: str = ""
    # role -> model spec (a string: the stage stays picklable); `session.Models` opens the clients
    roles: Mapping[str, str] = {}

    def config(self) -> dict[str, Any]:
        """The settings results depend on (plain JSON); hashed to check a resume."""
        return {}

    async def setup(self, models: Any) -> None:  # noqa: B027 - optional hook
        """Build what needs live clients (`models[role]` is an `LLMClient`)."""

    async def run(self, record: Record) -> StepResult:
        raise NotImplementedError


def reasoning_fields(reasoning: str, keep: bool = False, *, key: str = "reasoning") -> Record:
    """Where a stage's row puts a model's reasoning trace (llm/reasoning.py): nothing when
    there is none; with `keep` a column of its own (for building reasoning data); otherwise
    the row's lineage under META, which no export or training format reads."""
    if not reasoning:
        return {}
    if keep:
        return {key: reasoning}
    return {META: {key: reasoning}}
