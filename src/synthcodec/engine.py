"""The run engine: map an async step over a stream of records, journaling each result.

A stage is plain data (a name and an async function of one record); the executor decides
how records reach it. `LocalExecutor` keeps a fixed number of records in flight with one
worker coroutine per slot: each worker takes the next record as soon as its last one
finishes, so a slow record never idles the other slots, and nothing is created per record
up front, so memory does not grow with the input.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from synthcodec.llm.client import RecordFailed, Stats
from synthcodec.progress import Counts, Progress
from synthcodec.store import FAILED, OK, REJECTED, Journal

Record = dict[str, Any]
StepResult = Record | list[Record] | None


class Reject(Exception):
    """Raised by a step: a deliberate decision not to keep this record (kept with the reason)."""

    def __init__(self, reason: str, data: Record | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


@dataclass(frozen=True)
class Stage:
    """A named step: `step(record) -> output record(s)`; raise Reject or RecordFailed to drop one."""

    name: str
    step: Callable[[Record], Awaitable[StepResult]]


@dataclass(frozen=True)
class Item:
    """One input record with its deterministic id and input position."""

    id: str
    idx: int
    record: Record


class Interrupted(Exception):
    """The user stopped the run; everything finished so far is journaled."""


@dataclass
class RunResult:
    counts: Counts
    interrupted: bool = False
    seconds: float = 0.0


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
        stage: Stage,
        items: Iterable[Item],
        journal: Journal,
        *,
        stats: Stats | None = None,
        progress: Progress | None = None,
        total: int | None = None,
    ) -> RunResult:
        counts = progress.counts if progress else Counts(total=total)
        started = time.monotonic()
        source: Iterator[Item] = iter(items)
        journal.prepare()
        self._stopping = False
        fatal: list[BaseException] = []

        def next_item() -> Item | None:
            for item in source:
                if journal.finished(item.id):
                    counts.resumed += 1
                    continue
                return item
            return None

        async def worker() -> None:
            while not self._stopping and not fatal:
                item = next_item()
                if item is None:
                    return
                try:
                    result = await stage.step(item.record)
                except Reject as exc:
                    data = {"id": item.id, "reason": exc.reason, **(exc.data or item.record)}
                    journal.record(item.id, item.idx, REJECTED, data)
                    counts.rejected += 1
                except RecordFailed as exc:
                    journal.record(item.id, item.idx, FAILED,
                                   {"id": item.id, "error": str(exc), **item.record})
                    counts.failed += 1
                except Exception as exc:  # noqa: BLE001 - a bad key or a bug: stop the run, re-raise below
                    fatal.append(exc)
                    return
                else:
                    outputs = [] if result is None else result if isinstance(result, list) else [result]
                    journal.record(item.id, item.idx, OK, outputs)
                    counts.ok += 1
                counts.done += 1
                if progress:
                    progress.tick()

        loop = asyncio.get_running_loop()
        interrupts = 0
        workers: list[asyncio.Task[None]] = []

        def on_sigint() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                self.stop()
                if progress:
                    progress.note(
                        f"Stopping: letting in-flight records finish (up to {self.grace_seconds:g}s);"
                        " press Ctrl-C again to abort. Re-run the same command to resume."
                    )
                loop.call_later(self.grace_seconds, _cancel_all)
            else:
                _cancel_all()

        def _cancel_all() -> None:
            for task in workers:
                task.cancel()

        installed = False
        if self.handle_signals and sys.platform != "win32":
            try:
                loop.add_signal_handler(signal.SIGINT, on_sigint)
                loop.add_signal_handler(signal.SIGTERM, on_sigint)
                installed = True
            except (RuntimeError, ValueError):  # not the main thread
                installed = False
        ticker = asyncio.create_task(_tick(progress)) if progress else None
        try:
            workers = [asyncio.create_task(worker()) for _ in range(max(1, self.concurrency))]
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
        finally:
            if ticker:
                ticker.cancel()
            if installed:
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)
        if fatal:  # a bad key or a bug in a step: surface it, don't journal it per record
            raise fatal[0]
        del outcomes
        return RunResult(counts=counts, interrupted=self._stopping,
                         seconds=time.monotonic() - started)


async def _tick(progress: Progress) -> None:
    while True:
        await asyncio.sleep(0.2)
        progress.tick()
