"""The executor: refills slots as records finish, streams input, journals exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthcodec.executors import Item, LocalExecutor, Reject, Stage
from synthcodec.llm.client import RecordFailed
from synthcodec.records import reason_of
from synthcodec.store import FAILED, OK, REJECTED, RunDir


def _journal(tmp_path: Path, name: str = "s"):
    run = RunDir(tmp_path / "run").open({"x": 1})
    return run, run.journal(name)


def _items(n: int, seen: list[int] | None = None) -> Iterator[Item]:
    for i in range(n):
        if seen is not None:
            seen.append(i)
        yield Item(id=f"r{i}", idx=i, record={"i": i})


def test_slow_record_does_not_idle_other_slots(tmp_path: Path) -> None:
    in_flight = max_in_flight = 0

    async def step(record: dict) -> dict:
        nonlocal in_flight, max_in_flight
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        await asyncio.sleep(0.5 if record["i"] == 0 else 0.01)
        in_flight -= 1
        return record

    run, journal = _journal(tmp_path)
    started = time.monotonic()
    result = asyncio.run(LocalExecutor(concurrency=4, handle_signals=False).run(
        Stage("s", step), _items(100), journal))
    elapsed = time.monotonic() - started
    assert result.counts.ok == 100
    assert max_in_flight == 4
    # Batch-wise execution would take 25 rounds with the slow one in the first: > 0.7 s.
    # Refilled slots finish the other 99 (about 33 rounds of 10 ms on 3 slots) beside it.
    assert elapsed < 0.5 + 0.33 + 0.25


def test_input_is_pulled_lazily(tmp_path: Path) -> None:
    seen: list[int] = []
    done = 0

    async def step(record: dict) -> dict:
        nonlocal done
        # never more than the in-flight window ahead of what has finished
        assert len(seen) - done <= 8
        await asyncio.sleep(0)
        done += 1
        return record

    run, journal = _journal(tmp_path)
    asyncio.run(LocalExecutor(concurrency=8, handle_signals=False).run(
        Stage("s", step), _items(500, seen), journal))
    assert journal.counts()[OK] == 500


def test_outcomes_are_journaled_and_resume_skips_finished(tmp_path: Path) -> None:
    calls: list[int] = []

    async def step(record: dict) -> dict | list[dict]:
        calls.append(record["i"])
        if record["i"] % 5 == 1:
            raise Reject("odd one", {"i": record["i"]})
        if record["i"] % 5 == 2:
            raise RecordFailed("model broke")
        return [record, {"copy": record["i"]}] if record["i"] == 0 else record

    run, journal = _journal(tmp_path)
    first = asyncio.run(LocalExecutor(concurrency=3, handle_signals=False).run(
        Stage("s", step), _items(10), journal))
    assert (first.counts.ok, first.counts.rejected, first.counts.failed) == (6, 2, 2)
    assert [row["i"] for row in journal.rows(REJECTED)] == [1, 6]
    assert all(reason_of(row) == "odd one" for row in journal.rows(REJECTED))
    assert [reason_of(row) for row in journal.rows(FAILED)] == ["model broke"] * 2
    assert list(journal.rows(OK))[0] == [{"i": 0}, {"copy": 0}]

    calls.clear()
    second = asyncio.run(LocalExecutor(concurrency=3, handle_signals=False).run(
        Stage("s", step), _items(10), journal))
    assert sorted(calls) == [2, 7]  # only the failed ones are tried again
    assert second.counts.resumed == 8
    assert sum(journal.counts().values()) == 10


def test_stop_lets_in_flight_finish_and_run_resumes(tmp_path: Path) -> None:
    executor = LocalExecutor(concurrency=2, handle_signals=False)

    async def step(record: dict) -> dict:
        await asyncio.sleep(0.01)
        if record["i"] == 5:
            executor.stop()
        return record

    run, journal = _journal(tmp_path)
    result = asyncio.run(executor.run(Stage("s", step), _items(50), journal))
    assert result.interrupted
    finished = journal.counts()[OK]
    assert 5 <= finished < 50

    async def plain(record: dict) -> dict:
        return record

    again = asyncio.run(LocalExecutor(concurrency=2, handle_signals=False).run(
        Stage("s", plain), _items(50), journal))
    assert not again.interrupted
    assert again.counts.resumed == finished
    ids = [row[0]["i"] for row in journal.rows(OK)]
    assert ids == list(range(50))  # published in input order, none twice


def test_a_bug_in_a_step_stops_the_run(tmp_path: Path) -> None:
    async def step(record: dict) -> dict:
        raise KeyError("oops")

    run, journal = _journal(tmp_path)
    with pytest.raises(KeyError):
        asyncio.run(LocalExecutor(concurrency=2, handle_signals=False).run(
            Stage("s", step), _items(10), journal))
    assert journal.counts() == {OK: 0, REJECTED: 0, FAILED: 0}


def test_stop_when_stops_taking_records_on_the_driver(tmp_path: Path) -> None:
    """A cross-record condition (generate's "stop at n kept") sees each kept record's outputs
    after they are journaled; once it says enough, in-flight records finish and no new one
    starts, and the run is 'reached', not interrupted."""
    seen: list[list[dict]] = []

    async def step(record: dict) -> dict | None:
        await asyncio.sleep(0.001)
        if record["i"] % 2:
            raise Reject("odd")
        return {"kept": record["i"]}

    def enough(outputs: list[dict]) -> bool:
        seen.append(outputs)
        return len(seen) >= 5

    run, journal = _journal(tmp_path)
    result = asyncio.run(LocalExecutor(concurrency=2, handle_signals=False).run(
        Stage("s", step), _items(100), journal, stop_when=enough))
    assert result.reached and not result.interrupted
    assert all(len(o) == 1 and o[0]["kept"] % 2 == 0 for o in seen)  # kept records only
    counts = journal.counts()
    assert 5 <= counts[OK] <= 6  # the one in flight beside the fifth may finish
    assert counts[OK] + counts[REJECTED] < 20
    run.close()


def test_ray_splits_the_per_endpoint_limit_over_shards() -> None:
    """-j is per server: with two servers, each of 2 shards gets half of -j, not of 2 x -j."""
    from synthcodec.executors.ray import RayExecutor
    from synthcodec.session import Models, RunOptions

    options = RunOptions(concurrency=8, no_cache=True, executor="ray")
    models = Models.open({"m": "m@http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"}, options)
    try:
        assert models.concurrency() == 16  # records in flight: enough to fill both servers
        worker = RayExecutor(models, options)._worker_options(2)
        assert worker.concurrency == 4
        opened = Models.open(models.specs, worker)  # what each shard's worker does
        assert opened.endpoint_limit() == 4 and opened.concurrency() == 8
        asyncio.run(opened.aclose())
    finally:
        asyncio.run(models.aclose())


def test_ray_gives_every_submitted_shard_a_part_of_the_budget() -> None:
    """Shards are submitted two per CPU slot, so half of them wait in Ray's queue holding
    their share: each one submitted gets a part of what is left (none gets nothing, which
    stopped a run with a large cap after its first shard), and together no more than it."""
    from types import SimpleNamespace

    from synthcodec.cost import Spend
    from synthcodec.executors.ray import SUBMITTED_PER_CPU, RayExecutor, Shard

    spend = Spend(budget_usd=10.0, max_tokens=1000)
    executor = RayExecutor(SimpleNamespace(spend=spend), options=None)
    submitted, shards = SUBMITTED_PER_CPU * 2, []  # two CPU slots
    for seq in range(submitted):
        shard = Shard(seq, Path(f"{seq}.sqlite"))
        shard.allowance = executor._allowance(shards, submitted)
        shards.append(shard)
    assert all(s.allowance["tokens"] > 0 and s.allowance["usd"] > 0 for s in shards)
    assert sum(s.allowance["tokens"] for s in shards) <= 1000
    assert sum(s.allowance["usd"] for s in shards) <= 10.0 + 1e-9
