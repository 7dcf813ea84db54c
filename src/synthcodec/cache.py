"""The request cache: SQLite (WAL), keyed by a hash of the fully rendered request.

The key covers model identity (name + endpoint), messages, sampling parameters, schema and
sample index; never an API key. Writes are committed in small batches: losing the last few
entries to a crash only costs a re-send, while the run journal (store.py) is what keeps
resume exact. A batch waits in memory and goes in one short transaction, so processes that
share the file (the workers of `--executor ray` on one machine) hold its write lock only
for that moment; held across a batch, it made two workers take turns (measured: half the
throughput).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import sqlite3
import time
from json.encoder import encode_basestring as _string  # json's own (C) string writer
from pathlib import Path
from typing import Any

from synthcodec.errors import CannotWrite, UserError, write_failure
from synthcodec.llm.base import Completion, Request, TokenLogprob

COMMIT_EVERY = 256
COMMIT_SECONDS = 0.5


def default_cache_path() -> Path:
    """$SYNTHCODEC_CACHE, else $XDG_CACHE_HOME/synthcodec/requests.sqlite."""
    explicit = os.environ.get("SYNTHCODEC_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "synthcodec" / "requests.sqlite"


_KEY_JSON: dict[str, Any] = {"sort_keys": True, "ensure_ascii": False, "separators": (",", ":")}


def request_key(identity: str, request: Request) -> str:
    """sha256 of the JSON of `{"model": identity, **request.canonical()}` (sorted keys)."""
    blob = _chat_key_json(identity, request)
    if blob is None:
        blob = json.dumps({"model": identity, **request.canonical()}, **_KEY_JSON)
    return hashlib.sha256(blob.encode()).hexdigest()


def _chat_key_json(identity: str, request: Request) -> str | None:
    """The same JSON text as json.dumps gives in `request_key`, written directly for a plain
    chat request (str messages, numbers that are ints or finite floats), else None. Every
    request pays for its key: with json.dumps (sort_keys) `request_key` took 28 us of the
    client's ~100 us of its own per request on the benchmark machine, written here 7 us
    (docs/benchmarks.md, issue 19). tests/unit/test_cache_fast_paths.py holds it to json.dumps,
    byte for byte."""
    if type(request) is not Request:
        return None
    messages = []
    for message in request.messages:
        if type(message) is not dict:
            return None
        fields = []
        for name in sorted(message):
            value = message[name]
            if type(name) is not str or type(value) is not str:
                return None
            fields.append(f"{_string(name)}:{_string(value)}")
        messages.append("{" + ",".join(fields) + "}")
    stop = request.stop
    if stop:
        if not all(type(s) is str for s in stop):
            return None
        stop_json = "[" + ",".join(_string(s) for s in stop) + "]"
    else:
        stop_json = "null"
    numbers = [_number(request.max_tokens, False), _number(request.sample, False),
               _number(request.temperature, True),
               "null" if request.top_p is None else _number(request.top_p, True)]
    if request.top_logprobs is not None:
        numbers.append(_number(request.top_logprobs, False))
    if None in numbers or type(identity) is not str:
        return None
    schema = ("null" if request.json_schema is None
              else json.dumps(request.json_schema, **_KEY_JSON))
    logprobs = f',"top_logprobs":{numbers[4]}' if len(numbers) > 4 else ""
    return (f'{{"json_schema":{schema},"max_tokens":{numbers[0]},"messages":['
            + ",".join(messages)
            + f'],"model":{_string(identity)},"sample":{numbers[1]},"stop":{stop_json},'
            f'"temperature":{numbers[2]}{logprobs},"top_p":{numbers[3]}}}')


def _number(value: object, real: bool) -> str | None:
    """An int (or, `real`, a finite float) as json.dumps writes it; None for anything else."""
    if type(value) is int:
        return int.__repr__(value)
    if real and type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return None


class RequestCache:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            if self.path.is_dir():
                raise IsADirectoryError(21, "is a directory")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS completions ("
                " key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT,"
                " prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
            )
            self._db.execute("SELECT key, text, finish_reason, prompt_tokens, completion_tokens,"
                             " created FROM completions LIMIT 0")
            _add_logprobs_column(self._db)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot use the request cache {self.path}: "
                            f"{getattr(exc, 'strerror', None) or exc} (pick another file with "
                            "--cache PATH, or --no-cache)") from None
        self._pending: dict[str, tuple[str, str, str | None, int, int, float, str | None]] = {}
        self._last_commit = time.monotonic()
        # `lookup`: keys asked in this turn of the event loop, each with its callers' futures
        self._asked: dict[str, list[asyncio.Future[Completion | None]]] = {}
        self._asked_loop: asyncio.AbstractEventLoop | None = None

    def get(self, key: str) -> Completion | None:
        pending = self._pending.get(key)
        if pending is not None:
            return _completion(pending[1:5] + pending[6:7])
        row = self._db.execute(f"SELECT {_COLUMNS} FROM completions WHERE key = ?",
                               (key,)).fetchone()
        return None if row is None else _completion(row)

    async def lookup(self, key: str) -> Completion | None:
        """`get` from a coroutine: the keys looked up within one turn of the event loop are
        read in one SELECT. A SELECT of its own per request took 40 us of CPU at 256 in
        flight under load (each one takes and drops WAL's read lock: two fcntl calls), about
        a fifth of what the client added to a bare aiohttp loop (docs/benchmarks.md,
        issue 19)."""
        pending = self._pending.get(key)
        if pending is not None:
            return _completion(pending[1:5] + pending[6:7])
        loop = asyncio.get_running_loop()
        if not self._asked or self._asked_loop is not loop:  # (a closed loop's are dropped)
            self._asked, self._asked_loop = {}, loop
            loop.call_soon(self._look_up_asked)
        waiter: asyncio.Future[Completion | None] = loop.create_future()
        self._asked.setdefault(key, []).append(waiter)
        return await waiter

    def _look_up_asked(self) -> None:
        asked, self._asked = self._asked, {}
        found: dict[str, tuple[Any, ...]] = {}
        keys = list(asked)
        try:
            for start in range(0, len(keys), 500):  # SQLite's limit on ? in one statement
                chunk = keys[start:start + 500]
                found.update((row[0], row[1:]) for row in self._db.execute(
                    f"SELECT key, {_COLUMNS} FROM completions WHERE key IN "
                    f"({','.join('?' * len(chunk))})", chunk))
        except Exception as exc:  # noqa: BLE001  (each caller gets what get() would raise)
            for waiters in asked.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            return
        for key, waiters in asked.items():
            pending = self._pending.get(key)  # put while the lookup waited
            row = pending[1:5] + pending[6:7] if pending is not None else found.get(key)
            for waiter in waiters:
                if not waiter.done():  # (a cancelled caller)
                    waiter.set_result(None if row is None else _completion(row))

    def put(self, key: str, completion: Completion) -> None:
        self._pending[key] = (key, completion.text, completion.finish_reason,
                              completion.prompt_tokens, completion.completion_tokens, time.time(),
                              _logprobs_to_json(completion.token_logprobs))
        now = time.monotonic()
        if len(self._pending) >= COMMIT_EVERY or now - self._last_commit > COMMIT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO completions (key, text, finish_reason, prompt_tokens,"
                    " completion_tokens, created, token_logprobs) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    list(self._pending.values()))
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                reason = write_failure(exc)
                if reason is None:
                    raise
                self._pending.clear()  # a cache: losing them costs a re-send, nothing more
                raise CannotWrite(self.path, reason) from None
            self._pending.clear()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._db.close()


_COLUMNS = "text, finish_reason, prompt_tokens, completion_tokens, token_logprobs"


def _completion(row: tuple[Any, ...]) -> Completion:
    """A Completion from a row of _COLUMNS (a new one each time: callers change theirs)."""
    return Completion(text=row[0], finish_reason=row[1], prompt_tokens=row[2],
                      completion_tokens=row[3], cached=True,
                      token_logprobs=_logprobs_from_json(row[4]))


def _add_logprobs_column(db: sqlite3.Connection) -> None:
    """The generated tokens' log-probabilities (JSON, NULL when none were asked): added to a
    cache file made before the column existed, whose entries stay valid."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(completions)")}
    if "token_logprobs" not in columns:
        try:
            db.execute("ALTER TABLE completions ADD COLUMN token_logprobs TEXT")
        except sqlite3.OperationalError as exc:  # another process sharing the file added it
            if "duplicate column" not in str(exc):
                raise


def _logprobs_to_json(logprobs: tuple[TokenLogprob, ...] | None) -> str | None:
    if logprobs is None:
        return None
    return json.dumps([t.as_list() for t in logprobs], ensure_ascii=False,
                      separators=(",", ":"))


def _logprobs_from_json(text: str | None) -> tuple[TokenLogprob, ...] | None:
    if text is None:
        return None
    return tuple(TokenLogprob.from_list(item) for item in json.loads(text))
