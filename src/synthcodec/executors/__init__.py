"""Executors: what runs a stage over records, and the contract every one of them keeps.

A stage (stages/base.py) is a name and `async run(record)`; an executor takes the stage,
`Item`s (a record with its deterministic id and input position) and the stage's `Journal`,
and for every item not already finished in the journal (`local.to_do`: resume) journals one
outcome:

- OK: whatever `run` returned (a row, a list of rows, or None for none);
- REJECTED: `run` raised `Reject(reason)`, a deliberate decision (the row kept with why);
- FAILED: `run` raised `llm.client.RecordFailed` (the row kept with why; retried next run);
- nothing: `run` raised `errors.Drain` (e.g. a budget cap): the record stays to do, and the
  executor takes no new ones.

Anything else raised is a bug or bad data and stops the run. An executor's `stop()` takes no
new records and lets the ones in flight finish (the first Ctrl-C, a `stop_when` that says the
run has enough, a budget); `run(...)` returns a `RunResult` (counts, interrupted, reached).
An executor with `remote = True` sets the stage up in its workers, not in the driver.

- `local.LocalExecutor`: N worker coroutines in this process (the default);
- `ray.RayExecutor`: shards of the input as Ray tasks, each running a `LocalExecutor`
  (`--executor ray`, imported only then).

`run.run_stage` is the one place a command runs a stage: it picks the executor from the run's
options, sets the stage up, shows progress and returns the usage the stage caused.
"""

from synthcodec.executors.local import (
    Item,
    LocalExecutor,
    Reject,
    RunResult,
    Stage,
    StageLike,
    StepResult,
    StopWhen,
)
from synthcodec.executors.run import StageRun, run_async, run_stage

__all__ = [
    "Item",
    "LocalExecutor",
    "Reject",
    "RunResult",
    "Stage",
    "StageLike",
    "StepResult",
    "StageRun",
    "StopWhen",
    "run_async",
    "run_stage",
]
