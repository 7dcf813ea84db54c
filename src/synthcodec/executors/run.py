"""Where a stage runs: `run_stage`, the one place any stage runs on an executor (local or
Ray), and `run_async`, which runs a command's coroutine from plain or notebook code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any, TypeVar

from synthcodec.executors.local import Item, LocalExecutor, RunResult, StageLike, StopWhen
from synthcodec.progress import Counts, Progress
from synthcodec.session import Models, RunOptions
from synthcodec.store import Journal

T = TypeVar("T")


@dataclass
class StageRun:
    """What one pass of a stage did: the executor's result and the models' usage in it."""

    result: RunResult
    usage: dict[str, int]


async def run_stage(stage: StageLike, items: Iterable[Item], journal: Journal, models: Models,
                    options: RunOptions, *, label: str | None = None, total: int | None = None,
                    concurrency: int | None = None,
                    stop_when: StopWhen | None = None) -> StageRun:
    """Run `stage` over `items` into its journal: the one place every command runs a stage.

    Sets the stage up (`setup(models)`, when it has one), shows progress, lets a budget stop
    drain it like a first Ctrl-C, and returns the usage it caused. The executor is
    `options.executor`: local, or Ray (executors/ray.py: shards of
    `items` on a Ray cluster, the stage set up in each worker); `concurrency` is records in
    flight (default: what the models can take), over the whole run either way. `stop_when`
    (`StopWhen`) is a cross-record stop condition the executor checks on the driver.
    """
    if total is None and isinstance(items, Sized):
        total = len(items)
    before = models.stats.as_dict()
    counts = Counts(total=total)
    progress = Progress(label or stage.name, counts, models.stats, enabled=options.progress,
                        interval=options.progress_interval, spend=models.spend)
    executor: LocalExecutor | Any
    if options.executor == "ray":
        from synthcodec.executors.ray import RayExecutor

        executor = RayExecutor(models, options, concurrency=concurrency)
    else:
        workers = concurrency or models.concurrency()
        executor = LocalExecutor(
            concurrency=min(workers, max(1, total)) if total is not None else workers)
    models.spend.on_stop[:] = [executor.stop, lambda: progress.note(
        f"{models.spend.stopped}: letting in-flight records finish, starting no new ones")]
    setup = getattr(stage, "setup", None)
    if setup is not None and not getattr(executor, "remote", False):
        await setup(models)
    try:
        result = await executor.run(stage, items, journal, progress=progress, total=total,
                                    stop_when=stop_when)
    finally:
        progress.close()
    after = models.stats.as_dict()
    return StageRun(result, {k: v - before.get(k, 0) for k, v in after.items()
                             if isinstance(v, (int, float))})


def run_async(coro: Any) -> Any:
    """`asyncio.run`, also from inside a running event loop (Jupyter): then on a thread."""
    return off_event_loop(lambda: asyncio.run(coro))


def off_event_loop(fn: Callable[[], T]) -> T:
    """`fn()` here, or on a thread of its own when an event loop runs here (Jupyter): for
    code that starts an event loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()
