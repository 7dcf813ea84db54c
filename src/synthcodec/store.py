"""The run directory: resolved config, per-stage journals, atomic outputs, manifest.

Layout of RUN/:
  config.json        the resolved configuration (checked on resume)
  stages.json        runs of several stages: each stage's settings (StageLedger)
  journal.sqlite     one table per stage: (id, idx, status, data); a row is committed as
                     soon as its record finishes, so kill -9 loses only in-flight records
  <name>.jsonl       outputs, published atomically (temp file, fsync, rename)
  manifest.json      counts, hashes, token usage, versions
  .lock              held (flock) by the one process writing the run; others may read
  shards/<table>/    only while `--executor ray` runs a stage: one journal per shard of it
                     (synthcodec.executors.ray), merged into journal.sqlite by the driver
The full contract is docs/run-layout.md. One module (about 500 lines): everything
that reads or writes a run directory's files, so the layout lives in one place.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from synthcodec import __version__
from synthcodec.errors import CannotWrite, UserError, write_failure

OK, REJECTED, FAILED = "ok", "rejected", "failed"
JOURNAL = "journal.sqlite"  # in the run directory: one table per stage
LOCK_FILE = ".lock"
# Files a run publishes; an --overwrite removes them with the journal so that no old
# output outlives the run it came from.
PUBLISHED = ("output.jsonl", "output.parquet", "rejected.jsonl", "failed.jsonl", "manifest.json")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which must not race file creation
# on other threads mid-run.
_UMASK = _read_umask()


def dumps(value: Any, **options: Any) -> str:
    """`value` as JSON text, the one way a run's files are written: strict JSON. NaN and
    Infinity (which json.dumps would write bare, and strict readers refuse) are an error
    naming where they are; input with them is refused when read (io.check_row)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, **options)
    except ValueError:
        where = _non_finite(value)
        if where is None:
            raise
        raise ValueError(f"refusing to write invalid JSON: {where or 'the value'} is NaN or "
                         "Infinity") from None


def _non_finite(value: Any, where: str = "") -> str | None:
    """The path (`a.b[2]`) of the first NaN/Infinity in `value`, '' for `value` itself."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    items = (value.items() if isinstance(value, dict) else
             enumerate(value) if isinstance(value, (list, tuple)) else ())
    for key, item in items:
        found = _non_finite(item, f"{where}[{key}]" if isinstance(key, int)
                            else f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def canonical_json(value: Any) -> str:
    return dumps(value, sort_keys=True, separators=(",", ":"))


def hash_value(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file 0600; published files get the user's usual permissions.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        reason = write_failure(exc)
        if reason is not None:
            raise CannotWrite(target, reason) from None
        raise


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Rows as JSON Lines (strict JSON, `dumps`), written atomically; returns how many."""
    n = 0
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(dumps(row))
            fh.write("\n")
            n += 1
    return n


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    text = dumps(value, indent=2, sort_keys=True)
    with atomic_writer(path) as fh:
        fh.write(text)
        fh.write("\n")


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
    """A JSON file's value; `default` when it is missing, unreadable or not (yet) JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A journal database: WAL, a commit per row, readable by other processes while live."""
    # check_same_thread off: the run may go on a worker thread (inside a running event
    # loop, see executors.run_async); one thread at a time uses it.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")  # a reader's checkpoint never fails a commit
    return db


def journal_entries(run_path: str | os.PathLike[str], stage: str
                    ) -> Iterator[tuple[str, Any]]:
    """(status, data) of one stage's journal in input order, opened read-only (`mode=ro`):
    for readers of a live run (the viewer, `push`), which must never block its writer and
    never create anything. Nothing when there is no journal or no such stage yet."""
    db_path = Path(run_path) / JOURNAL
    if not db_path.exists() or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", stage):
        return
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return
    try:
        try:
            fetched = db.execute(f"SELECT status, data FROM stage_{stage} ORDER BY idx").fetchall()
        except sqlite3.Error:
            return
        for status, data in fetched:
            yield status, json.loads(data)
    finally:
        db.close()


class Journal:
    """One stage's record of finished work, keyed by deterministic record id.

    `run_dir` is the run directory it belongs to (None for a shard's own journal): a
    distributed executor keeps its per-shard journals under `shard_dir`.
    """

    def __init__(self, db: sqlite3.Connection, stage: str,
                 run_dir: str | os.PathLike[str] | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", stage):
            raise ValueError(f"bad stage name {stage!r}")
        self.db = db
        self.stage = stage
        self.table = f"stage_{stage}"
        self.shard_dir = Path(run_dir) / "shards" / self.table if run_dir is not None else None
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (id TEXT PRIMARY KEY, idx INTEGER NOT NULL,"
            " status TEXT NOT NULL, data TEXT NOT NULL)"
        )
        db.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_idx ON {self.table}(idx)")
        self.prepare()

    def prepare(self) -> None:
        """Called before a pass over the input: a fresh stage needs no per-record lookups."""
        self._maybe_done = self.db.execute(
            f"SELECT 1 FROM {self.table} LIMIT 1").fetchone() is not None

    def finished(self, record_id: str) -> bool:
        """Done for good: kept or rejected. Failed records are tried again on the next run."""
        if not self._maybe_done:
            return False
        row = self.db.execute(
            f"SELECT status FROM {self.table} WHERE id = ?", (record_id,)
        ).fetchone()
        return row is not None and row[0] != FAILED

    def record(self, record_id: str, idx: int, status: str, data: Any) -> None:
        with self._writing():
            self.db.execute(
                f"INSERT OR REPLACE INTO {self.table} (id, idx, status, data) VALUES (?, ?, ?, ?)",
                (record_id, idx, status, dumps(data)),
            )
        self._maybe_done = True  # `finished` must see it (merge relies on that)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk while journaling is CannotWrite, naming the journal file (the row
        is not committed: SQLite keeps the journal as it was)."""
        try:
            yield
        except sqlite3.Error as exc:
            reason = write_failure(exc)
            if reason is None:
                raise
            path = next((row[2] for row in self.db.execute("PRAGMA database_list")), "journal")
            raise CannotWrite(path or "journal", reason) from None

    def raw_rows(self) -> Iterator[tuple[str, int, str, str]]:
        """Every row as stored, (id, idx, status, data JSON), in input order."""
        yield from self.db.execute(f"SELECT id, idx, status, data FROM {self.table} ORDER BY idx")

    def merge(self, rows: Iterable[tuple[str, int, str, str]]) -> None:
        """Add rows from another journal of this stage (`raw_rows`), in one transaction.
        Idempotent (keyed by record id); a failed row never replaces a finished one."""
        with self._writing():
            self.db.execute("BEGIN")
            try:
                for rid, idx, status, data in rows:
                    if status == FAILED and self.finished(rid):
                        continue
                    self.db.execute(f"INSERT OR REPLACE INTO {self.table} (id, idx, status, "
                                    "data) VALUES (?, ?, ?, ?)", (rid, idx, status, data))
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        self._maybe_done = True

    def rows(self, status: str) -> Iterator[Any]:
        """Journal rows of one status in input order, streamed."""
        cursor = self.db.execute(
            f"SELECT data FROM {self.table} WHERE status = ? ORDER BY idx", (status,)
        )
        for (data,) in cursor:
            yield json.loads(data)

    def counts(self) -> dict[str, int]:
        counts = {OK: 0, REJECTED: 0, FAILED: 0}
        for status, n in self.db.execute(
            f"SELECT status, COUNT(*) FROM {self.table} GROUP BY status"
        ):
            counts[status] = n
        return counts

    def clear(self) -> None:
        self.db.execute(f"DELETE FROM {self.table}")
        self._maybe_done = False
        if self.shard_dir is not None:  # shards of the old settings must not be merged later
            shutil.rmtree(self.shard_dir, ignore_errors=True)


STAGES_FILE = "stages.json"


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The top-level keys whose values differ between two configurations, sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class StageLedger:
    """The one resume scheme for a run of several stages (generate and its stage commands,
    the experiment's steps): RUN/stages.json holds, per stage, the settings it ran with,
    their hash and the hash of its input. A stage whose settings and input are unchanged
    resumes (per record, from its journal); a changed one is redone and, through the input
    hashes, so is every stage after it, and nothing else. What a change leads to (redo at
    once, or refuse without --overwrite) is the caller's policy; the bookkeeping is here.
    Keys starting with "_" hold run-level notes (the models used, published files' hashes).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.state: dict[str, Any] = (json.loads(self.path.read_text("utf-8"))
                                      if self.path.exists() else {})

    def entry(self, stage: str) -> dict[str, Any]:
        return dict(self.state.get(stage) or {})

    def change(self, stage: str, config: dict[str, Any],
               input_sha: str | None = None) -> tuple[str, list[str]] | None:
        """None when `stage` never ran or ran with these settings and this input; else
        ("settings", the keys that changed) or ("input", [])."""
        prev = self.state.get(stage)
        if prev is None:
            return None
        if prev.get("config_sha") != hash_value(config):
            return "settings", changed_keys(prev.get("config") or {}, config)
        if input_sha is not None and prev.get("input_sha") != input_sha:
            return "input", []
        return None

    def start(self, stage: str, config: dict[str, Any], input_sha: str | None = None,
              *, fresh: bool = False) -> None:
        """Record the settings `stage` runs with (`fresh`: forget its earlier entry)."""
        entry = {"stats": {}} if fresh else self.state.get(stage) or {"stats": {}}
        entry.update(config=config, config_sha=hash_value(config), input_sha=input_sha)
        self.state[stage] = entry
        self.save()

    def finish(self, stage: str, *, stats: dict[str, int] | None = None, **info: Any) -> None:
        """Add this invocation's model usage to the stage's total and record `info`."""
        entry = self.state.setdefault(stage, {"stats": {}})
        totals = entry.setdefault("stats", {})
        for key, value in (stats or {}).items():
            totals[key] = totals.get(key, 0) + value
        entry.update(info)
        self.save()

    def total_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for name, entry in self.state.items():
            if name.startswith("_") or not isinstance(entry, dict):
                continue
            for key, value in entry.get("stats", {}).items():
                total[key] = total.get(key, 0) + value
        return total

    def save(self) -> None:
        write_json(self.path, self.state)


def read_journal(run_dir: str | os.PathLike[str], stage: str, status: str | None = None
                 ) -> list[Any]:
    """A stage's journal rows (of one status, or all), in input order, read without
    disturbing a live run."""
    return [data for st, data in journal_entries(run_dir, stage) if status in (None, st)]


class RunDir:
    """A run directory. Opening one that holds a different configuration is an error."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock: IO[Any] | None = None
        self._ledger: StageLedger | None = None

    def check(self) -> None:
        """Can a run be written here? Checked before anything is created."""
        check_writable_dir(self.path, what="run directory")

    def open(self, config: dict[str, Any], *, overwrite: bool = False) -> "RunDir":
        """Start or resume the run described by `config` (its hash must match to resume).

        Call it only once everything else (input, models, cache) has been checked: it
        creates the directory, and with `overwrite` discards the run that was there.
        """
        self.check()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            return self._open(config, overwrite)
        except (OSError, sqlite3.DatabaseError) as exc:
            self.close()
            reason = write_failure(exc)
            if reason is not None:
                raise CannotWrite(self.path, reason) from None
            raise UserError(f"cannot write the run directory {self.path}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None

    def _open(self, config: dict[str, Any], overwrite: bool) -> "RunDir":
        # One process writes a run at a time: an advisory lock on RUN/.lock, which the OS
        # drops when the process dies (kill -9 included). The journal itself stays readable
        # by other processes (a viewer, `sqlite3`) while the run is live, which SQLite's
        # exclusive locking mode would forbid.
        self._lock = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise UserError(f"another synthcodec process is working in {self.path}; "
                            "wait for it or stop it first") from None
        self._db = connect(self.path / JOURNAL)
        config_path = self.path / "config.json"
        if config_path.exists():
            old = json.loads(config_path.read_text(encoding="utf-8"))
            if hash_value(old) != hash_value(config):
                # A run that finished no record (it stopped at once: no server, a bad key)
                # holds nothing to protect: the corrected command simply takes it over.
                if not overwrite and self._has_work():
                    self.close()
                    raise UserError(
                        f"{self.path} holds a run with a different configuration "
                        f"(changed: {', '.join(changed_keys(old, config))}). Use another -o directory, or "
                        "--overwrite to discard that run."
                    )
                self._reset()
        write_json(config_path, config)
        return self

    def _stage_tables(self) -> list[str]:
        assert self._db is not None
        return [name for (name,) in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'stage_%'")]

    def _has_work(self) -> bool:
        assert self._db is not None
        return any(self._db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                   for t in self._stage_tables())

    def _reset(self) -> None:
        assert self._db is not None
        for table in self._stage_tables():
            self._db.execute(f"DROP TABLE {table}")
        for name in PUBLISHED:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / "shards", ignore_errors=True)

    @property
    def ledger(self) -> StageLedger:
        """RUN/stages.json, for a run of several stages (one object per open run, so every
        writer of it sees the others' entries)."""
        if self._ledger is None:
            self._ledger = StageLedger(self.path / STAGES_FILE)
        return self._ledger

    def journal(self, stage: str) -> Journal:
        if self._db is None:
            raise RuntimeError("RunDir.open() first")
        return Journal(self._db, stage, self.path)

    def publish_jsonl(self, name: str, rows: Iterable[Any]) -> int:
        """Atomically write rows to RUN/name; returns how many."""
        return write_jsonl(self.path / name, rows)

    def usage_total(self) -> dict[str, Any]:
        """Usage (tokens, `usd`) of every earlier invocation of this run."""
        path = self.path / "manifest.json"
        if not path.exists():
            return {}
        return dict(json.loads(path.read_text(encoding="utf-8")).get("usage_total", {}))

    def accumulate_usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        """Usage of every invocation of this run so far, this one included."""
        before = self.usage_total()
        total = {k: before.get(k, 0) + usage.get(k, 0) for k in set(before) | set(usage)}
        if isinstance(total.get("usd"), float):
            total["usd"] = round(total["usd"], 6)
        return total

    def write_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = {
            "synthcodec_version": __version__,
            "python": platform.python_version(),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **fields,
        }
        manifest["versions"] = _versions()
        write_json(self.path / "manifest.json", manifest)
        return manifest

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def check_writable_dir(path: str | os.PathLike[str], *, what: str = "directory") -> None:
    """UserError unless `path` is (or can be created as) a directory we can write in."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{p} exists and is not a directory (the {what})")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"cannot create the {what} {p}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the {what} {p}: {probe} is not writable")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("synthcodec", "llama-cpp-python", "aiohttp", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
