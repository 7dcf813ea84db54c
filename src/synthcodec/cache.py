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

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from synthcodec.errors import CannotWrite, UserError, write_failure
from synthcodec.llm.base import Completion, Request, TokenLogprob

COMMIT_EVERY = 64
COMMIT_SECONDS = 0.5


def default_cache_path() -> Path:
    """$SYNTHCODEC_CACHE, else $XDG_CACHE_HOME/synthcodec/requests.sqlite."""
    explicit = os.environ.get("SYNTHCODEC_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "synthcodec" / "requests.sqlite"


def request_key(identity: str, request: Request) -> str:
    blob = json.dumps({"model": identity, **request.canonical()}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


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

    def get(self, key: str) -> Completion | None:
        pending = self._pending.get(key)
        row = (pending[1:5] + pending[6:7]) if pending is not None else self._db.execute(
            "SELECT text, finish_reason, prompt_tokens, completion_tokens, token_logprobs"
            " FROM completions WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return Completion(text=row[0], finish_reason=row[1], prompt_tokens=row[2],
                          completion_tokens=row[3], cached=True,
                          token_logprobs=_logprobs_from_json(row[4]))

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
