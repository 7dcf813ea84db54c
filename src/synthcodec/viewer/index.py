"""The viewer's row index: every row of a run in an in-memory SQLite table with an FTS5
full-text index, so filtering, searching and paging stay fast at 100,000 rows.

Built from `rundir_reader.Run.rows()` (the one reader of the run layout); rebuilt when the
run's files change (a live run), at most once per `min_interval` seconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import InitVar, dataclass, field
from typing import Any

from synthcodec.rundir_reader import REVIEW_FILE, Run, ViewRow

PAGE_SIZE = 50
_COLUMNS = ("key", "stage", "status", "final", "reason", "score", "gap", "iteration",
            "use_case", "skills", "model", "text", "note")


@dataclass
class Filters:
    status: str = ""
    stage: str = ""
    iteration: str = ""
    use_case: str = ""
    skill: str = ""
    model: str = ""
    score_min: str = ""
    score_max: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, params: Any) -> "Filters":
        f = cls()
        for name in ("status", "stage", "iteration", "use_case", "skill", "model", "score_min",
                     "score_max", "q"):
            setattr(f, name, str(params.get(name, "") or "").strip()[:500])
        try:
            f.page = max(1, int(params.get("page", 1)))
        except (TypeError, ValueError):
            f.page = 1
        return f

    def query(self, **override: Any) -> dict[str, Any]:
        values = {k: v for k, v in self.__dict__.items() if v not in ("", None)}
        values.update(override)
        return {k: v for k, v in values.items() if v not in ("", None)}


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    seconds: float


@dataclass
class RowIndex:
    """The rows of `run`; `rows`: the run's rows when the caller has read them already."""

    run: Run
    rows: InitVar[Iterable[ViewRow] | None] = None
    min_interval: float = 2.0
    db: sqlite3.Connection = field(init=False)
    facets: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    version: int = 0
    built_at: float = 0.0
    _signature: Any = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self, rows: Iterable[ViewRow] | None) -> None:
        self.db = self._new_db()
        if rows is None:
            self.refresh(force=True)
        else:
            self._signature, self.built_at = self._files_signature(), time.monotonic()
            self._build(rows)

    @staticmethod
    def _new_db() -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.execute("CREATE TABLE rows (rid INTEGER PRIMARY KEY, key TEXT, stage TEXT, "
                   "status TEXT, final TEXT, reason TEXT, score REAL, gap REAL, "
                   "iteration INTEGER, use_case TEXT, skills TEXT, model TEXT, text TEXT, "
                   "note TEXT, review TEXT, data TEXT)")
        db.execute("CREATE VIRTUAL TABLE fts USING fts5(body, content='', "
                   "tokenize='unicode61')")
        return db

    def _files_signature(self) -> Any:
        sig = []
        p = self.run.path
        for path in [*p.glob("*.jsonl"), *p.glob("*.json"), *p.glob("rejects/*.jsonl"),
                     *p.glob("journal.sqlite*")]:
            if path.name == REVIEW_FILE:
                continue  # a hand review is applied by mark(), without a rebuild
            try:
                st = path.stat()
            except OSError:
                continue
            sig.append((path.name, st.st_mtime_ns, st.st_size))
        return sorted(sig)

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild when the run's files changed (and not more than every min_interval s)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self.built_at < self.min_interval:
                return False
            sig = self._files_signature()
            self.built_at = now
            if not force and sig == self._signature:
                return False
            self._signature = sig
            self._build()
            return True

    def _build(self, rows: Iterable[ViewRow] | None = None) -> None:
        db = self._new_db()
        batch: list[tuple[Any, ...]] = []
        fts: list[tuple[int, str]] = []
        rid = 0
        for row in self.run.rows() if rows is None else rows:
            rid += 1
            batch.append(_record(rid, row))
            fts.append((rid, _body(row)))
            if len(batch) >= 5000:
                _insert(db, batch, fts)
                batch, fts = [], []
        _insert(db, batch, fts)
        for col in ("final", "stage", "use_case", "model", "iteration", "score"):
            db.execute(f"CREATE INDEX rows_{col} ON rows({col})")
        facets: dict[str, list[str]] = {}
        for col in ("stage", "use_case", "model", "iteration"):
            facets[col] = [str(v) for (v,) in db.execute(
                f"SELECT DISTINCT {col} FROM rows WHERE {col} IS NOT NULL AND {col} != '' "
                f"ORDER BY {col} LIMIT 500")]
        skills: set[str] = set()
        for (value,) in db.execute("SELECT DISTINCT skills FROM rows WHERE skills != ''"):
            skills.update(s for s in value.strip("|").split("|") if s)
            if len(skills) > 500:
                break
        facets["skill"] = sorted(skills)
        counts = {status: n for status, n in db.execute(
            "SELECT final, COUNT(*) FROM rows GROUP BY final")}
        old = self.db
        self.db, self.facets, self.counts = db, facets, counts
        self.version += 1
        old.close()

    # ------------------------------------------------------------------ queries

    def page(self, f: Filters, size: int = PAGE_SIZE) -> Page:
        started = time.perf_counter()
        where, args = _where(f)
        with self._lock:
            total = self.db.execute(f"SELECT COUNT(*) FROM rows {where}", args).fetchone()[0]
            pages = max(1, -(-total // size))
            page = min(f.page, pages)
            cursor = self.db.execute(
                f"SELECT rid, {', '.join(_COLUMNS)} FROM rows {where} ORDER BY rid "
                f"LIMIT ? OFFSET ?", [*args, size, (page - 1) * size])
            rows = [dict(zip(("rid", *_COLUMNS), r)) for r in cursor]
        for r in rows:
            r["skills"] = [s for s in (r["skills"] or "").strip("|").split("|") if s]
        return Page(rows, total, page, pages, time.perf_counter() - started)

    def get(self, rid: int) -> ViewRow | None:
        with self._lock:
            hit = self.db.execute(f"SELECT {', '.join(_COLUMNS)}, review, data FROM rows "
                                  "WHERE rid = ?", (rid,)).fetchone()
        if hit is None:
            return None
        d = dict(zip((*_COLUMNS, "review", "data"), hit))
        return ViewRow(key=d["key"], stage=d["stage"], status=d["status"],
                       data=json.loads(d["data"]), reason=d["reason"], score=d["score"],
                       gap=d["gap"], iteration=d["iteration"], use_case=d["use_case"],
                       skills=[s for s in d["skills"].strip("|").split("|") if s],
                       model=d["model"], text=d["text"],
                       review=json.loads(d["review"]) if d["review"] else None)

    def column(self, name: str) -> list[Any]:
        assert name in ("score", "gap", "iteration")
        with self._lock:
            return [v for (v,) in self.db.execute(
                f"SELECT {name} FROM rows WHERE {name} IS NOT NULL")]

    def kept_per_iteration(self) -> dict[int, int]:
        with self._lock:
            return {int(i): n for i, n in self.db.execute(
                "SELECT iteration, COUNT(*) FROM rows WHERE final = 'kept' AND iteration "
                "IS NOT NULL GROUP BY iteration ORDER BY iteration")}

    def outcomes_per_category(self) -> dict[str, Counter[str]]:
        """compare: kept verdicts (after hand review) per category -> CodecLM outcome counts."""
        per: dict[str, Counter[str]] = {}
        with self._lock:
            for category, outcome, n in self.db.execute(
                    "SELECT use_case, json_extract(data, '$.codeclm'), COUNT(*) FROM rows "
                    "WHERE final = 'kept' GROUP BY 1, 2"):
                per.setdefault(category or "(none)", Counter())[str(outcome)] += n
        return per

    def mark(self, entry: dict[str, Any]) -> None:
        """Reflect a hand review (an entry append_review wrote to review.jsonl) at once."""
        key, status = entry["key"], entry["status"]
        with self._lock:
            if status == "clear":
                self.db.execute("UPDATE rows SET final = status, note = '', review = NULL "
                                "WHERE key = ?", (key,))
            else:
                self.db.execute("UPDATE rows SET final = ?, note = ?, review = ? WHERE key = ?",
                                (status, entry.get("note", ""),
                                 json.dumps(entry, ensure_ascii=False), key))
            self.counts = {s: n for s, n in self.db.execute(
                "SELECT final, COUNT(*) FROM rows GROUP BY final")}
            self.version += 1


def _record(rid: int, row: ViewRow) -> tuple[Any, ...]:
    return (rid, row.key, row.stage, row.status, row.final_status, row.reason, row.score,
            row.gap, row.iteration, row.use_case, "|" + "|".join(row.skills) + "|" if row.skills
            else "", row.model, row.text, (row.review or {}).get("note", ""),
            json.dumps(row.review, ensure_ascii=False) if row.review else None,
            json.dumps(row.data, ensure_ascii=False))


def _body(row: ViewRow) -> str:
    """The searchable text of a row: every string in it."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(row.data)
    out.append(row.reason)
    return "\n".join(out)


def _insert(db: sqlite3.Connection, batch: list[tuple[Any, ...]], fts: list[tuple[int, str]]) -> None:
    if batch:
        db.executemany("INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
        db.executemany("INSERT INTO fts (rowid, body) VALUES (?, ?)", fts)


def fts_query(text: str) -> str:
    """User text -> an FTS5 query: every word must occur (prefix match), nothing else."""
    words = [w.replace('"', '""') for w in text.split() if w.strip()]
    return " ".join(f'"{w}"*' for w in words[:20])


def _where(f: Filters) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for col, value in (("final", f.status), ("stage", f.stage), ("use_case", f.use_case),
                       ("model", f.model)):
        if value:
            clauses.append(f"{col} = ?")
            args.append(value)
    if f.iteration:
        try:
            args.append(int(f.iteration))
            clauses.append("iteration = ?")
        except ValueError:
            pass
    if f.skill:
        clauses.append("skills LIKE ? ESCAPE '\\'")
        args.append("%|" + f.skill.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                    + "|%")
    for col, op, value in (("score", ">=", f.score_min), ("score", "<=", f.score_max)):
        if value:
            try:
                args.append(float(value))
                clauses.append(f"score {op} ?")
            except ValueError:
                pass
    if f.q and fts_query(f.q):
        clauses.append("rid IN (SELECT rowid FROM fts WHERE fts MATCH ?)")
        args.append(fts_query(f.q))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args
