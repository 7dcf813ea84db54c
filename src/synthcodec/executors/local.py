"""The local executor: map an async step over a stream of records, journaling each result.

A stage is plain data (a name and an async function of one record); the executor decides
how records reach it. `LocalExecutor` keeps a fixed number of records in flight with one
worker coroutine per slot: each worker takes the next record as soon as its last one
finishes, so a slow record never idles the other slots, and nothing is created per record
up front, so memory does not grow with the input.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from synthcodec.errors import Drain
from synthcodec.llm.client import RecordFailed
from synthcodec.progress import Counts, Progress
from synthcodec.records import Record, dropped_row
from synthcodec.store import FAILED, OK, REJECTED, Journal

log = logging.getLogger(__name__)

StepResult = Record | list[Record] | None


class Reject(Exception):
    """Raised by a step: a deliberate decision not to keep this record (kept with the reason)."""

    def __init__(self, reason: str, data: Record | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


class StageLike(Protocol):
    """What an executor runs: a name (its journal) and `run(record)`; see stages/base.py."""

    name: str

    async def run(self, record: Record) -> StepResult: ...


@dataclass(frozen=True)
class Stage:
    """A plain async function as a stage: `step(record) -> output record(s)`."""

    name: str
    step: Callable[[Record], Awaitable[StepResult]]

    async def run(self, record: Record) -> StepResult:
        return await self.step(record)


@dataclass(frozen=True)
class Item:
    """One input record with its deterministic id and input position.

    `record` is what the step gets; `row`, when given, is the user's input row as read,
    which a rejected or failed record is written as (our fields never replace theirs).
    """

    id: str
    idx: int
    record: Record
    row: Record | None = None


@dataclass
class RunResult:
    counts: Counts
    interrupted: bool = False
    seconds: float = 0.0
    reached: bool = False  # `stop_when` said enough: stopped on purpose, not interrupted


# A driver-side stop condition: sees each kept record's outputs right after they are
# journaled (in completion order) and says whether the run has enough. Work across records
# lives here, beside the executor, never inside a step.
StopWhen = Callable[[list[Record]], bool]


@dataclass
class LocalExecutor:
    concurrency: int = 64
    grace_seconds: float = 30.0  # after the first Ctrl-C, how long in-flight records may finish
    handle_signals: bool = True
    _stopping: bool = field(default=False, init=False)

    def stop(self) -> None:
        """Stop taking new records; in-flight ones finish (the first Ctrl-C does this)."""
        self._stopping = True

    async def run(
        self,
        stage: StageLike,
        items: Iterable[Item],
        journal: Journal,
        *,
        progress: Progress | None = None,
        total: int | None = None,
        stop_when: StopWhen | None = None,
    ) -> RunResult:
        counts = progress.counts if progress else Counts(total=total)
        started = time.monotonic()
        source = to_do(items, journal, counts)
        journal.prepare()
        self._stopping = False
        reached = False
        fatal: list[BaseException] = []

        async def worker() -> None:
            try:
                while not self._stopping and not fatal:
                    item = next(source, None)
                    if item is None:
                        return
                    await one(item)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # a bug or bad data outside a step: stop the run
                fatal.append(exc)

        async def one(item: Item) -> None:
            try:
                result = await stage.run(item.record)
            except Reject as exc:
                journal.record(item.id, item.idx, REJECTED,
                               dropped_row(item, REJECTED, exc.reason, exc.data))
                counts.rejected += 1
            except Drain:
                # Not done (e.g. a budget cap): the record stays to do; take no new ones.
                self.stop()
                return
            except RecordFailed as exc:
                journal.record(item.id, item.idx, FAILED,
                               dropped_row(item, FAILED, str(exc), repeats=exc.repeats))
                counts.failed += 1
            else:
                outputs = [] if result is None else result if isinstance(result, list) else [result]
                journal.record(item.id, item.idx, OK, outputs)
                counts.ok += 1
                if stop_when is not None and not reached and stop_when(outputs):
                    mark_reached()  # in-flight records finish and are journaled
            counts.done += 1
            if progress:
                progress.tick()

        def mark_reached() -> None:
            nonlocal reached
            reached = True
            self.stop()

        loop = asyncio.get_running_loop()
        interrupts = 0
        workers: list[asyncio.Task[None]] = []

        def on_sigint() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                self.stop()
                message = (f"Stopping: letting in-flight records finish (up to "
                           f"{self.grace_seconds:g}s); press Ctrl-C again to abort. Re-run the "
                           "same command to resume.")
                if progress:
                    progress.note(message)
                else:
                    log.info(message)
                loop.call_later(self.grace_seconds, _cancel_all)
            else:
                _cancel_all()

        def _cancel_all() -> None:
            for task in workers:
                task.cancel()

        ticker = asyncio.create_task(_tick(progress)) if progress else None
        try:
            with on_interrupt(loop, on_sigint, enabled=self.handle_signals):
                workers = [asyncio.create_task(worker()) for _ in range(max(1, self.concurrency))]
                outcomes = await asyncio.gather(*workers, return_exceptions=True)
            if self._stopping:
                # Workers cancelled after the grace period are an interruption, not a bug.
                outcomes = [o for o in outcomes if not isinstance(o, asyncio.CancelledError)]
        finally:
            if ticker:
                ticker.cancel()
        # A bad key, a bug in a step or bad data: surface it, never journal it per record
        # or let the run look complete with records missing.
        errors = fatal + [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise errors[0]
        return RunResult(counts=counts, interrupted=self._stopping and not reached,
                         seconds=time.monotonic() - started, reached=reached)


def to_do(items: Iterable[Item], journal: Journal, counts: Counts) -> Iterator[Item]:
    """The items not finished in `journal` (the others are counted as resumed), streamed."""
    for item in items:
        if journal.finished(item.id):
            counts.resumed += 1
        else:
            yield item


@contextmanager
def on_interrupt(loop: asyncio.AbstractEventLoop, handler: Callable[[], None], *,
                 enabled: bool = True) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler` while inside (only on the main thread, not Windows);
    on leaving, the handlers from before are back (asyncio alone would leave SIGTERM at its
    default, which kills the process outright: the CLI's SIGTERM acts as a Ctrl-C)."""
    installed: dict[int, Any] = {}
    if enabled and sys.platform != "win32":
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                before = signal.getsignal(sig)
                loop.add_signal_handler(sig, handler)
                installed[sig] = before
        except (RuntimeError, ValueError):  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, before in installed.items():
            loop.remove_signal_handler(sig)
            if before is not None:  # None: a handler not set from Python, nothing to restore
                signal.signal(sig, before)


async def _tick(progress: Progress) -> None:
    while True:
        await asyncio.sleep(0.2)
        progress.tick()
