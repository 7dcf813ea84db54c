"""Provider batch APIs (`--batch`): requests go out as OpenAI-style batches, not one by one.

OpenAI (and servers that speak the same endpoints) take a JSONL file of requests
(`POST /v1/files`, purpose=batch), run it as a batch (`POST /v1/batches`) within a
completion window, at about half the price, and answer with an output file (and an error
file). How that fits the rest, and why:

- **A property of sending, not of stages.** `LLMClient` keeps its one retry loop; in batch
  mode one *attempt* of a request is its slot in a batch (`BatchSender.complete`): the
  request waits on a future until its batch is done. So every stage, multi-call ones
  included (the generate loop, both-order judging, re-asks), runs unchanged: each waiting
  record advances by one call per pass, and both orders of a judgement go in the same pass.
- **A pass.** Requests that miss the cache are queued; once no new one has arrived for
  `settle` seconds (every record in flight is waiting on the model: `run_stage` keeps
  "all" records in flight in batch mode) or the queue holds a batch's worth, the queue is
  submitted, split by the provider's limits (50,000 requests, 200 MB per file). Two records
  sending the identical request share one line (custom_id = the request's cache key).
- **Failures go through the one retry loop.** An answer with a retryable status, a request
  an expired or cancelled batch never answered, a failed upload: `TransientError` for that
  request only, so the retry loop counts an attempt and re-queues it for the next pass;
  other 4xx are `PermanentError` (the record fails with the reason). Answered requests are
  never sent again. Polling is the only loop here: a poll that fails is tried again at the
  next (doubled) interval; after `POLL_FAILURES` in a row the run stops (exit 3) and a
  re-run resumes polling.
- **The ledger (RUN/batches.jsonl) makes it exactly-once.** Appended and fsynced *before*
  anything waits: `file` (uploaded file id + custom_ids) right after the upload, `batch`
  (batch id) right after the provider returns it, `done` once its results are in the
  request cache. A re-run polls every unfinished batch of the ledger and requests whose
  custom_id is in one wait on it: nothing is submitted twice. The one window, a kill
  between the create call and its `batch` line, is closed on resume by listing the
  provider's batches for the ledger's input file id (GET /v1/batches); only if that listing
  fails too could a file be submitted again.
- **Results live in the cache**, so `--no-cache` is refused; a finished batch makes a
  re-run all cache hits.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.cache import RequestCache
from synthcodec.llm.base import Completion, PermanentError, Request, TransientError
from synthcodec.llm.client import FatalModelError, Stats

DONE = {"completed", "expired", "failed", "cancelled"}
POLL_FAILURES = 8  # polls in a row that fail before the run stops (a re-run resumes)
LEDGER = "batches.jsonl"


@dataclass(frozen=True)
class BatchSettings:
    poll: float = 30.0  # seconds between polls of a batch (after 10 polls: slowly up to 10x)
    settle: float = 1.0  # a pass is submitted once no request has been queued for this long
    max_requests: int = 50_000  # per batch file (OpenAI's limit)
    max_bytes: int = 190_000_000  # per batch file (OpenAI: 200 MB)
    window: str = "24h"


class BatchLedger:
    """RUN/batches.jsonl: one JSON line per upload, batch and finished batch (see above).

    Shared by every model of a run; it also keeps the state the progress line shows."""

    def __init__(self, run_dir: str | os.PathLike[str], stats: Stats) -> None:
        self.path = Path(run_dir) / LEDGER
        self.stats = stats
        self.entries: list[dict[str, Any]] = []
        text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        for line in text.splitlines():
            try:
                self.entries.append(json.loads(line))
            except ValueError:  # a line cut by a kill: the entry was never acted on
                continue
        # After a cut last line, the next entry starts on a line of its own (else it would
        # be glued to the cut one and lost with it).
        self._cut = bool(text) and not text.endswith("\n")
        self.live: dict[str, tuple[str, dict[str, int]]] = {}  # batch id -> status, counts
        self.finished = 0
        self.queued = 0

    def append(self, entry: dict[str, Any]) -> None:
        entry = {**entry, "at": round(time.time(), 3)}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("\n" * self._cut + json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._cut = False
        self.entries.append(entry)

    def unfinished(self, model: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(file id -> custom_ids of uploads with no batch, batch id -> custom_ids of batches
        not done) for one model."""
        files = {e["file_id"]: e["custom_ids"] for e in self.entries
                 if e.get("op") == "file" and e.get("model") == model}
        batches: dict[str, list[str]] = {}
        for e in self.entries:
            if e.get("op") == "batch" and e.get("model") == model:
                batches[e["batch_id"]] = files.pop(e["file_id"], [])
            elif e.get("op") == "done":
                batches.pop(e["batch_id"], None)
        return files, batches

    def note(self, batch_id: str, status: str, counts: dict[str, int] | None = None) -> None:
        if status in DONE:
            self.live.pop(batch_id, None)
            self.finished += 1
        else:
            self.live[batch_id] = (status, counts or {})
        self.show()

    def show(self) -> None:
        """`batch 2/3 in_progress 512/1000 | 40 queued` into Stats for the progress line."""
        parts = []
        if self.live:
            status, counts = next(iter(self.live.values()))
            done = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
            parts.append(f"batch {self.finished + 1}/{self.finished + len(self.live)} {status} "
                         f"{done}/{int(counts.get('total') or 0)}")
        if self.queued:
            parts.append(f"{self.queued} queued for a batch")
        self.stats.batch_status = " ".join(parts)


@dataclass
class BatchSender:
    """One model's batch traffic: queue -> pass -> batch(es) -> poll -> cache + futures.

    `backend` is an `OpenAIHTTPBackend` (its body(), api(), check_status(), read_reply())."""

    backend: Any
    cache: RequestCache
    ledger: BatchLedger
    settings: BatchSettings = field(default_factory=BatchSettings)
    _waiters: dict[str, list[asyncio.Future[Completion]]] = field(default_factory=dict)
    _queue: dict[str, Request] = field(default_factory=dict)
    _in_batch: dict[str, str] = field(default_factory=dict)  # custom_id -> batch id
    _arrived: float = 0.0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _collector: asyncio.Task[None] | None = None
    _started: asyncio.Task[None] | None = None

    async def complete(self, request: Request, key: str) -> Completion:
        """One attempt: `request`'s slot in a batch (an unfinished one of the ledger, or the
        next pass). Raises TransientError / PermanentError for this request alone."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._resume())
        await asyncio.shield(self._started)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        if key not in self._in_batch and key not in self._queue:
            cached = self.cache.get(key)  # a batch may have answered it since the caller looked
            if cached is not None:
                return cached
            self._queue[key] = request
            self._arrived = time.monotonic()
            self.ledger.queued += 1
            if self._collector is None or self._collector.done():
                self._collector = self._spawn(self._collect())
        self._waiters.setdefault(key, []).append(future)
        return await future

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _resume(self) -> None:
        """Poll the ledger's unfinished batches; adopt a batch created for an uploaded file
        whose `batch` line a kill prevented."""
        files, batches = self.ledger.unfinished(self.backend.identity)
        if files:
            try:
                listed = json.loads(await self.backend.api("GET", "batches?limit=100"))
                by_file = {b.get("input_file_id"): b.get("id") for b in listed.get("data", [])}
            except (TransientError, PermanentError, ValueError, AttributeError):
                by_file = {}  # cannot tell: those requests are queued again when they come
            for file_id, custom_ids in files.items():
                if by_file.get(file_id):
                    self.ledger.append({"op": "batch", "model": self.backend.identity,
                                        "file_id": file_id, "batch_id": by_file[file_id]})
                    batches[by_file[file_id]] = custom_ids
        for batch_id, custom_ids in batches.items():
            self._watch(batch_id, custom_ids)

    def _watch(self, batch_id: str, custom_ids: list[str]) -> None:
        for key in custom_ids:
            self._in_batch[key] = batch_id
        self.ledger.note(batch_id, "submitted", {"total": len(custom_ids)})
        self._spawn(self._guarded(self._poll(batch_id, custom_ids), custom_ids))

    async def _guarded(self, coro: Any, custom_ids: list[str]) -> None:
        """A bug in polling or submitting reaches the waiting records (and stops the run
        there, as any bug does); it never leaves them hanging."""
        try:
            await coro
        except Exception as exc:
            self._finish(custom_ids, {}, exc)

    async def _collect(self) -> None:
        """Submit the queue once it has stopped growing (or holds a full batch)."""
        while self._queue:
            wait = self._arrived + self.settings.settle - time.monotonic()
            if wait > 0 and len(self._queue) < self.settings.max_requests:
                await asyncio.sleep(wait)
                continue
            taken, self._queue = self._queue, {}
            self.ledger.queued -= len(taken)
            for chunk in self._split(taken):
                for key in chunk:
                    self._in_batch[key] = ""  # being submitted: later arrivals wait on it
                await self._guarded(self._submit(chunk), list(chunk))

    def _split(self, taken: dict[str, Request]) -> list[dict[str, bytes]]:
        """JSONL lines per batch file, within the request and byte limits."""
        chunks: list[dict[str, bytes]] = [{}]
        size = 0
        for key, request in taken.items():
            line = json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                               "body": self.backend.body(request)}).encode() + b"\n"
            if chunks[-1] and (len(chunks[-1]) >= self.settings.max_requests
                               or size + len(line) > self.settings.max_bytes):
                chunks.append({})
                size = 0
            chunks[-1][key] = line
            size += len(line)
        return chunks

    async def _submit(self, chunk: dict[str, bytes]) -> None:
        model = self.backend.identity
        try:
            uploaded = await self.backend.api("POST", "files", upload=b"".join(chunk.values()),
                                              where="batch file upload: ")
            file_id = json.loads(uploaded)["id"]
            self.ledger.append({"op": "file", "model": model, "file_id": file_id,
                                "custom_ids": list(chunk)})
            created = await self.backend.api(
                "POST", "batches", where="batch create: ",
                json_body={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                           "completion_window": self.settings.window})
            batch_id = json.loads(created)["id"]
        except (TransientError, PermanentError) as exc:
            self._finish(list(chunk), {}, exc)
            return
        except (ValueError, KeyError, TypeError) as exc:
            self._finish(list(chunk), {}, TransientError(f"{model}: unreadable reply to a "
                                                         f"batch upload or create ({exc!r})"))
            return
        self.ledger.append({"op": "batch", "model": model, "file_id": file_id,
                            "batch_id": batch_id})
        self.ledger.stats.batches += 1
        self._watch(batch_id, list(chunk))

    async def _poll(self, batch_id: str, custom_ids: list[str]) -> None:
        interval, polls, failures = self.settings.poll, 0, 0
        where = f"batch {batch_id}: "
        while True:
            try:
                batch = json.loads(await self.backend.api("GET", f"batches/{batch_id}",
                                                          where=where))
                status = str(batch.get("status"))
                if status in DONE:
                    results = {}
                    for kind in ("output_file_id", "error_file_id"):
                        if batch.get(kind):
                            raw = await self.backend.api("GET", f"files/{batch[kind]}/content",
                                                         where=where)
                            results.update(self._read(raw, where))
                    break
                self.ledger.note(batch_id, status, batch.get("request_counts"))
                failures = 0
            except PermanentError as exc:  # e.g. a batch this provider does not know
                if exc.status in (401, 403):
                    self._finish(custom_ids, {}, exc)
                    return
                status, results = "unknown", {}
                break
            except (TransientError, ValueError, AttributeError) as exc:
                failures += 1
                if failures >= POLL_FAILURES:
                    self._finish(custom_ids, {}, FatalModelError(
                        f"cannot poll {where}{exc} (it is kept in {self.ledger.path}: run the "
                        "same command again to resume polling it)"))
                    return
            polls += 1
            if polls >= 10:
                interval = min(10 * self.settings.poll, interval * 1.25)
            # After failed polls the wait doubles while they fail; the schedule itself stays,
            # so the first good poll puts polling back on it.
            await asyncio.sleep(min(10 * self.settings.poll, interval * 2 ** failures))
        for key, outcome in results.items():
            if isinstance(outcome, Completion):
                self.cache.put(key, outcome)
        self.cache.flush()
        self.ledger.append({"op": "done", "batch_id": batch_id, "status": status})
        self.ledger.note(batch_id, "completed")
        # Unanswered and not in the error file: like an error-file line (_read), it goes into
        # the next pass at once, not after the retry loop's backoff (a pass of its own).
        self._finish(custom_ids, results, TransientError(
            f"{self.backend.identity}: {where}{status} without answering this request",
            retry_after=0.0))

    def _read(self, raw: bytes, where: str) -> dict[str, Completion | Exception]:
        """custom_id -> Completion, or the error to raise for it (output or error file)."""
        out: dict[str, Completion | Exception] = {}
        for line in raw.splitlines():
            try:
                entry = json.loads(line)
                key = str(entry["custom_id"])
            except (ValueError, KeyError, TypeError):
                continue  # an unreadable line: its request counts as unanswered
            response, error = entry.get("response"), entry.get("error")
            try:
                if not isinstance(response, dict):
                    raise TransientError(f"{self.backend.identity}: {where}"
                                         f"{(error or {}).get('code', 'no answer')}: "
                                         f"{(error or {}).get('message', '')}".rstrip(": "))
                body = json.dumps(response.get("body")).encode()
                self.backend.check_status(int(response.get("status_code") or 0), body,
                                          where=where)
                completion = self.backend.read_reply(body)
                completion.extra["batch"] = where
                out[key] = completion
            except (TransientError, PermanentError) as exc:
                if isinstance(exc, TransientError):
                    exc.status = None  # not the pacer's business: the next pass retries it
                    exc.retry_after = 0.0
                out[key] = exc
        return out

    def _finish(self, custom_ids: list[str], results: dict[str, Completion | Exception],
                missing: Exception) -> None:
        """Resolve every waiter of these requests with its result (or `missing`)."""
        for key in custom_ids:
            self._in_batch.pop(key, None)
            outcome = results.get(key, missing)
            for future in self._waiters.pop(key, []):
                if future.done():
                    continue
                if isinstance(outcome, Exception):  # a copy each: tracebacks stay apart
                    future.set_exception(copy.copy(outcome))
                else:
                    future.set_result(outcome)

    async def aclose(self) -> None:
        """Stop polling (the ledger keeps unfinished batches for the next run)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
