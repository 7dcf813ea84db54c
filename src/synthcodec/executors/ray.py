"""`--executor ray`: one stage over shards of its input, each shard a Ray task (`ShardTask`).

How, and why so (issue "Scale out"; the run layout stays the one of docs/run-layout.md).
One module of about 480 lines because the driver's half and the worker's half are one
protocol (shard files, markers, merge, progress reports) and read best side by side:

- **Shards.** The driver cuts the records still to do into shards, contiguous runs in input
  order (about 4 per CPU of the cluster, at most 500 records), and keeps at most two per CPU
  submitted, so the input streams. A task gets plain data only: the stage (picklable by
  the contract of stages/base.py), its records, the model specs and the run options. It
  opens its own clients (`Models.open`), awaits `stage.setup`, and runs the ordinary
  `LocalExecutor` over its records into its own journal, `RUN/shards/<table>/<first>-<last>
  .sqlite`, whose `shard` table gets a `complete` row (the completion marker) when every
  record is done. Backends given in Python (`backend=`) travel pickled; one that cannot is
  refused with one line.
- **Merge.** Only the driver writes `RUN/journal.sqlite`. When a shard's task has ended it
  merges the shard's rows into the stage's table in one transaction, in input order (a
  finished shard waits for the ones before it), keyed by record id, so merging twice writes
  the same rows; then it deletes the shard's files. `stop_when` sees each OK record's
  outputs in that order, so "stop at n kept" picks the same records whatever the timing.
- **Resume.** A run first merges every shard file an earlier run left (finished or not,
  after taking the shard's lock, so no worker of that run is still writing it), then
  shards what is still to do afresh. A worker killed mid-shard: Ray runs the task again
  (`RETRIES`); it opens the same shard journal and skips the records there. So `kill -9` of
  a worker or of the driver loses only the records in flight, as with the local executor.
- **Progress.** Each worker replaces `<shard>.json` (its journal's counts and its usage)
  every half second; the driver sums them into one progress line for the whole run and
  into the run's usage and spend. A small JSON file rather than the live SQLite: it reads
  the same on any shared filesystem.
- **Limits.** `--concurrency`, `--rpm` and `--tpm` stay per endpoint for the whole run:
  each of the P shards running at once gets 1/P of them. An embedded model (`local`,
  `gguf:`, `hf:`) is one model per CPU slot instead: each task holds one CPU and loads its
  own model with the usual limit (one llama.cpp thread unless SYNTHCODEC_LLAMA_THREADS is
  set), so embedded models scale with the cluster's cores.
- **Budget** (`--budget`, `--max-tokens-total`): a shard may spend at most what is left
  once the submitted shards hold their shares, split over the places left to submit
  (queued shards count: each holds its share before it starts); a shard that
  reaches its share drains like the local executor, the driver submits no more shards, and
  the run stops with exit code 4.
- **Cache.** Every worker opens the run's request cache file (resolved on the driver). On
  one machine that is one SQLite WAL file shared by every worker: SQLite serializes the
  (batched) commits, and each worker sees the others' answers at once. WAL needs all its
  users on one host, so on a multi-node cluster give `--cache` a node-local path (the
  default ~/.cache is one): each node keeps its own. Resume stays exact (the journals'
  job); only cross-node cache hits are lost.
- **Stopping.** The first Ctrl-C (or a stop condition, or the budget) submits nothing more
  and cancels the running shards; what they finished is merged and the run says to run it
  again. A second Ctrl-C leaves at once (the next run merges what the shards wrote). A
  worker that dies more than `RETRIES` times stops the run the same way.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synthcodec.errors import MissingExtraError, UserError
from synthcodec.executors.local import (
    Item,
    LocalExecutor,
    RunResult,
    StageLike,
    StopWhen,
    on_interrupt,
    to_do,
)
from synthcodec.llm.client import EndpointCounts
from synthcodec.llm.spec import find_kind
from synthcodec.progress import Counts, Progress
from synthcodec.records import Record
from synthcodec.store import FAILED, OK, REJECTED, Journal, connect, read_json, write_json

SHARDS_PER_CPU = 4
MAX_SHARD = 500
SUBMITTED_PER_CPU = 2  # shards submitted at once per CPU slot: one running, one queued
RETRIES = 3  # Ray re-runs a shard whose worker died this many times
REPORT_SECONDS = 0.5
LOCK_WAIT = 120.0  # seconds to wait for a worker of an earlier run to let go of a shard
SUFFIXES = (".sqlite", ".sqlite-wal", ".sqlite-shm", ".json", ".lock")


@dataclass
class ShardTask:
    """One stage's work as a shard's Ray task receives it: plain, picklable data."""

    stage: StageLike
    table: str  # the stage's journal table, without `stage_`
    specs: dict[str, str]
    backends: dict[str, Any]
    options: Any  # session.RunOptions with this shard's share of the limits
    concurrency: int  # records in flight in one shard
    open_models: Callable[..., Any]  # session.Models.open (passed in: no import cycle)


def run_shard(task: ShardTask, path: str, items: list[Item], allowance: dict[str, Any]) -> dict:
    """A Ray task: one shard through the stage into its own journal."""
    if embedded(task.specs, task.backends):
        os.environ.setdefault("SYNTHCODEC_LLAMA_THREADS", "1")  # one CPU slot, one thread
    with shard_lock(Path(path)):
        return asyncio.run(_shard(task, Path(path), items, allowance))


async def _shard(task: ShardTask, path: Path, items: list[Item],
                 allowance: dict[str, Any]) -> dict:
    db = connect(path)
    journal = Journal(db, task.table)
    db.execute("CREATE TABLE IF NOT EXISTS shard (key TEXT PRIMARY KEY, value TEXT)")
    report = path.with_suffix(".json")
    before = read_json(report, {}).get("usage", {})  # an earlier attempt's (its worker was killed)
    options = replace(task.options, budget=allowance.get("usd"),
                      max_tokens_total=allowance.get("tokens"))
    models = task.open_models(task.specs, options, task.backends)

    def write_report() -> None:
        write_json(report, {"counts": journal.counts(), "usage": _plus(before, usage_of(models))})

    async def reporter() -> None:
        while True:
            await asyncio.sleep(REPORT_SECONDS)
            write_report()

    ticker = None
    try:
        setup = getattr(task.stage, "setup", None)
        if setup is not None:
            await setup(models)
        ticker = asyncio.create_task(reporter())
        executor = LocalExecutor(concurrency=task.concurrency, handle_signals=False)
        models.spend.on_stop[:] = [executor.stop]
        result = await executor.run(task.stage, items, journal)
        if not result.interrupted:
            db.execute("INSERT OR REPLACE INTO shard VALUES ('complete', ?)", (str(len(items)),))
        return {"stopped": models.spend.stopped}
    finally:
        if ticker is not None:
            ticker.cancel()
        write_report()
        await models.aclose()
        db.close()


@contextmanager
def shard_lock(path: Path, wait: float = LOCK_WAIT) -> Iterator[None]:
    """The one writer of a shard: an flock, dropped by the OS when its process dies."""
    with open(path.with_suffix(".lock"), "a+") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UserError(f"{path} is still being written by another process (a "
                                    "Ray worker of an earlier run?); stop it first") from None
                time.sleep(0.2)
        yield


def usage_of(models: Any) -> dict[str, Any]:
    """A Models' usage as nested numbers (summable with `_plus`)."""
    s, spend = models.stats, models.spend
    return {"stats": s.as_dict(), "endpoints": s.endpoint_counts(),
            "models": {n: {"prompt_tokens": u.prompt_tokens, "cached_tokens": u.cached_tokens,
                           "completion_tokens": u.completion_tokens, "usd": u.usd,
                           "unreported": u.unreported}
                       for n, u in spend.models.items()},
            "spend": {"usd": spend.usd, "tokens": spend.tokens}}


def set_usage(models: Any, usage: dict[str, Any]) -> None:
    for k, v in usage["stats"].items():
        setattr(models.stats, k, v)
    for name, counts in usage["endpoints"].items():
        ep = models.stats.endpoints.setdefault(name, EndpointCounts())
        for k, v in counts.items():
            setattr(ep, k, v)
    for name, numbers in usage["models"].items():
        target = models.spend.models.get(name) or models.spend.add_model(name, None)
        for k, v in numbers.items():
            setattr(target, k, v)
    models.spend.usd, models.spend.tokens = usage["spend"]["usd"], usage["spend"]["tokens"]


def _plus(a: Any, b: Any) -> Any:
    if isinstance(a, dict) or isinstance(b, dict):
        a, b = a or {}, b or {}
        return {k: _plus(a.get(k), b.get(k)) for k in a.keys() | b.keys()}
    return (a or 0) + (b or 0)


def connect_ray(address: str | None) -> Any:
    """Join `address` (or $RAY_ADDRESS), else start a local cluster on 127.0.0.1."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"):
        # A cluster on this machine's loopback: without this Ray rewrites 127.0.0.1 to the
        # machine's address, where such a cluster does not listen. Read when ray is imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray", "--executor ray") from None
    if not ray.is_initialized():
        quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
        if address:
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"cannot join the Ray cluster at {address}: {exc}") from None
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            # Ray enables token authentication by default and warns that it did: say nothing.
            logging.getLogger("ray._private.authentication.authentication_token_setup"
                              ).setLevel(logging.ERROR)
            ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                     object_store_memory=256 << 20, **quiet)
    return ray


@dataclass
class Shard:
    seq: int
    path: Path
    report: dict[str, Any] = field(default_factory=dict)
    allowance: dict[str, Any] = field(default_factory=dict)


@dataclass
class RayExecutor:
    """Runs a stage's records as Ray tasks over shards (see the module docstring)."""

    models: Any  # session.Models: specs, injected backends, the run's stats and spend
    options: Any  # session.RunOptions
    concurrency: int | None = None  # records in flight over the whole run
    remote = True  # run_stage leaves stage.setup to the workers
    _stopping: bool = field(default=False, init=False)
    _reached: bool = field(default=False, init=False)

    def stop(self) -> None:
        self._stopping = True

    async def run(self, stage: StageLike, items: Iterable[Item], journal: Journal, *,
                  progress: Progress | None = None, total: int | None = None,
                  stop_when: StopWhen | None = None) -> RunResult:
        _check_picklable(stage, self.models.backends)
        ray = connect_ray(self.options.ray_address)
        from ray.exceptions import RayTaskError, TaskCancelledError

        if journal.shard_dir is None:
            raise ValueError("the Ray executor needs a journal in a run directory")
        started, folder, models = time.monotonic(), journal.shard_dir, self.models
        counts = progress.counts if progress else Counts(total=total)
        total = counts.total if total is None else total
        folder.mkdir(parents=True, exist_ok=True)
        self._stopping, self._reached, aborted = False, False, False
        merged: dict[str, Any] = {"usage": usage_of(models)}  # merged shards' reports, summed
        stop_when = self._once(stop_when)
        # What an earlier run left: merged first, so its records are skipped below.
        for path in sorted(folder.glob("*.sqlite")):
            _merge(path, journal, stop_when)
        journal.prepare()

        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        submitted = SUBMITTED_PER_CPU * slots  # shards submitted at once, queued ones too
        size = min(MAX_SHARD, max(1, math.ceil((total or 100 * slots) /
                                               (slots * SHARDS_PER_CPU))))
        share = 1 if embedded(models.specs, models.backends) else \
            min(slots, math.ceil((total or 1) / size))
        shard_task = ShardTask(stage, journal.stage, models.specs, models.backends,
                               self._worker_options(share),
                               max(1, math.ceil((self.concurrency or models.concurrency())
                                                / share)),
                               type(models).open)
        task_ref = ray.put(shard_task)
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(run_shard)

        pending = to_do(items, journal, counts)
        shards: dict[int, Shard] = {}  # seq -> a shard not merged yet
        running: dict[Any, Shard] = {}  # ray's ref -> its shard
        done_seq: set[int] = set()
        next_merge, exhausted, seqs, shown = 0, False, itertools.count(), 0.0

        loop = asyncio.get_running_loop()
        interrupts = 0

        def on_sigint() -> None:
            nonlocal interrupts, aborted
            interrupts += 1
            aborted = interrupts > 1
            self.stop()
            if progress is not None and interrupts == 1:
                progress.note("Stopping: cancelling the running shards and merging what they "
                              "finished; press Ctrl-C again to leave at once. Re-run the same "
                              "command to resume.")

        with on_interrupt(loop, on_sigint):
            while not aborted:
                while not (self._stopping or exhausted) and len(running) < submitted:
                    batch = list(itertools.islice(pending, size))
                    if not batch:
                        exhausted = True
                        break
                    shard = Shard(next(seqs), folder / f"{batch[0].idx:07d}-{batch[-1].idx:07d}"
                                                         ".sqlite")
                    shard.allowance = self._allowance(running.values(), submitted)
                    shards[shard.seq] = shard
                    running[task.remote(task_ref, str(shard.path), batch, shard.allowance)] = shard
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
                for ref in ready:
                    shard = running.pop(ref)
                    try:
                        out = ray.get(ref)
                    except RayTaskError as exc:  # a bug, bad data or a fatal model error
                        self._cancel(ray, running)
                        raise exc.cause if isinstance(exc.cause, BaseException) else exc
                    except TaskCancelledError:
                        continue
                    except ray.exceptions.RayError as exc:  # the worker died RETRIES times
                        self.stop()
                        if progress is not None:
                            progress.note(f"a Ray worker died running {shard.path.name} "
                                          f"({type(exc).__name__}): stopping; re-run to resume")
                        continue
                    done_seq.add(shard.seq)
                    if out.get("stopped"):
                        models.spend.stop(out["stopped"])  # a shard reached its budget share
                while next_merge in done_seq:
                    shard = shards.pop(next_merge)
                    merged = _plus(merged, _merge(shard.path, journal, stop_when) or shard.report)
                    next_merge += 1
                if time.monotonic() - shown >= REPORT_SECONDS:
                    self._show(merged, shards.values(), counts, progress)
                    shown = time.monotonic()
                if self._stopping:
                    self._cancel(ray, running)
                await asyncio.sleep(0.05)
        if not aborted:  # merge what stopped or cancelled shards finished, in input order
            by_path = {shard.path: seq for seq, shard in shards.items()}
            for path in sorted(folder.glob("*.sqlite")):
                report = _merge(path, journal, None)
                if path in by_path:
                    shard = shards.pop(by_path[path])
                    merged = _plus(merged, report or shard.report)
        self._show(merged, shards.values(), counts, progress)
        for empty in (folder, folder.parent):
            try:
                empty.rmdir()
            except OSError:  # not empty: shards an interrupted run leaves for the next
                break
        return RunResult(counts=counts, reached=self._reached,
                         interrupted=aborted or (self._stopping and not self._reached),
                         seconds=time.monotonic() - started)

    def _once(self, stop_when: StopWhen | None) -> StopWhen | None:
        """`stop_when` until it first says enough; then the executor stops (`_reached`)."""
        if stop_when is None:
            return None

        def check(outputs: list[Record]) -> bool:
            if not self._stopping and stop_when(outputs):
                self._reached = True
                self.stop()
            return self._stopping

        return check

    def _worker_options(self, share: int) -> Any:
        o = self.options  # paths made absolute: a worker's working directory is Ray's
        cache = o.cache_file()
        return replace(o, progress=False, cache_path=cache and str(Path(cache).resolve()),
            prices_file=o.prices_file and str(Path(o.prices_file).resolve()),
            concurrency=math.ceil(self.models.endpoint_limit() / share),
            rpm=o.rpm and o.rpm / share, tpm=o.tpm and o.tpm / share)

    def _allowance(self, running: Iterable[Shard], submitted: int) -> dict[str, Any]:
        """This shard's part of what the budget leaves (see the module docstring): split
        over the `submitted` places, so a queued shard gets its part too."""
        spend, out, running = self.models.spend, {}, list(running)
        free = max(1, submitted - len(running))
        held = [(s.allowance, s.report.get("usage", {}).get("spend", {})) for s in running]
        if spend.budget_usd is not None:
            left = spend.budget_usd - spend.total_usd - sum(
                max(0.0, a["usd"] - u.get("usd", 0.0)) for a, u in held)
            out["usd"] = max(0.0, left) / free
        if spend.max_tokens is not None:
            left = spend.max_tokens - spend.total_tokens - sum(
                max(0, a["tokens"] - u.get("tokens", 0)) for a, u in held)
            out["tokens"] = max(0, int(left / free))
        return out

    def _show(self, merged: dict[str, Any], unmerged: Iterable[Shard], counts: Counts,
              progress: Progress | None) -> None:
        """Counts and usage of the whole run: the merged shards' (summed once, at merge) and
        the latest report of each shard not merged yet."""
        total = merged
        for shard in unmerged:
            if shard.path.exists():
                shard.report = read_json(shard.path.with_suffix(".json"), {}) or shard.report
            total = _plus(total, shard.report)
        got = total.get("counts") or {}
        counts.ok, counts.rejected, counts.failed = (got.get(OK, 0), got.get(REJECTED, 0),
                                                     got.get(FAILED, 0))
        counts.done = counts.ok + counts.rejected + counts.failed
        set_usage(self.models, total["usage"])
        if progress is not None:
            progress.tick()

    @staticmethod
    def _cancel(ray: Any, running: dict[Any, Shard]) -> None:
        for ref in running:
            ray.cancel(ref)
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=60)
        running.clear()


def _merge(path: Path, journal: Journal, stop_when: StopWhen | None) -> dict[str, Any]:
    """Merge one shard's journal into the stage's (see the module docstring); its report."""
    with shard_lock(path):
        report = read_json(path.with_suffix(".json"), {})
        if path.exists():
            db = connect(path)
            try:
                rows = list(Journal(db, journal.stage).raw_rows())
            finally:
                db.close()
            journal.merge(rows)
            if stop_when is not None:
                for _, _, status, data in rows:
                    if status == OK and stop_when(json.loads(data)):
                        break
        for suffix in SUFFIXES:
            path.with_suffix(suffix).unlink(missing_ok=True)
    return report


def _check_picklable(stage: StageLike, backends: dict[str, Any]) -> None:
    """The stage and the backends given in Python go to the workers: refuse what cannot."""
    try:
        from ray import cloudpickle
    except ImportError:
        raise MissingExtraError("ray", "ray", "--executor ray") from None

    try:
        cloudpickle.dumps((stage, backends))
    except Exception as exc:  # noqa: BLE001 - what pickling raises varies
        raise UserError("--executor ray sends the stage and the backends given in Python to "
                        f"its workers, and these cannot be pickled ({exc}): use a model spec, "
                        "or a backend built from module-level functions") from None


def embedded(specs: dict[str, str], backends: dict[str, Any]) -> bool:
    """Does any model (not given as a backend) run inside the process (`local`, `gguf:`, `hf:`)?"""
    kinds = [find_kind(s) for r, s in specs.items() if r not in backends]
    return any(kind is not None and kind.in_process for kind in kinds)

