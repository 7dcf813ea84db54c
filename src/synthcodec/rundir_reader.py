"""Read any run directory, finished or live, for the viewer and `push`: the one place that
knows today's run layout (docs/run-layout.md). One module, a little over 400 lines, so that a
layout change touches one file.

Every run publishes `output.jsonl`, `rejected.jsonl` and `failed.jsonl` once finished
(status and reason of a dropped row in `_synthcodec`); what tells the kinds apart:
- file commands (`complete`, `rate`, `answer`): `config.json` with `stage`;
- `compare`: `config.json` stage `judge`; `report.json`;
- `generate` (CodecLM): `config.json` kind `codeclm`; `stages.json`, `rejects/<stage>.jsonl`,
  `encoded.jsonl`, `metadata.jsonl`, `rubrics.jsonl`, `summary.json`.

While a run is live (its writer holds an flock on RUN/.lock) or before a stage publishes
its files, rows come from `journal.sqlite`, opened read-only (`mode=ro`: never blocks the
writer). Nothing here writes, except `append_review` (RUN/review.jsonl, append-only).

Every row is a `ViewRow`: a stable `key` (generate: the base instruction id; file commands:
`_synthcodec.id`; compare: bench + key), the stage it belongs to, `status` kept / rejected /
failed, `reason`, `score`, `gap`, `iteration`, `use_case`, `skills`, `model`, a short
`text`, and the whole row in `data`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec import store
from synthcodec.llm.spec import redact_spec
from synthcodec.records import META
from synthcodec.store import journal_entries, read_json

KEPT, REJECTED, FAILED = "kept", "rejected", "failed"
STATUSES = (KEPT, REJECTED, FAILED)
REVIEW_FILE = "review.jsonl"
# The journal says ok for a finished record; the viewer and `push` call it kept.
_JOURNAL_STATUS = {store.OK: KEPT, store.REJECTED: REJECTED, store.FAILED: FAILED}
FILE_STAGES = ("complete", "rate", "answer")


@dataclass
class ViewRow:
    key: str
    stage: str
    status: str
    data: dict[str, Any]
    reason: str = ""
    score: float | None = None
    gap: float | None = None
    iteration: int | None = None
    use_case: str = ""
    skills: list[str] = field(default_factory=list)
    model: str = ""
    text: str = ""
    review: dict[str, Any] | None = None  # the latest hand review of this row, if any

    @property
    def final_status(self) -> str:
        """The status after hand review (review.jsonl), which wins over the run's own."""
        return self.review["status"] if self.review else self.status


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open(path, encoding="utf-8-sig")  # noqa: SIM115
    except OSError:
        return
    with fh:
        yield from jsonl_objects(fh)


def jsonl_objects(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects among `lines`; other lines are skipped (one being written right
    now, or a hand edit gone wrong)."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def is_live(path: Path) -> bool:
    """Does a writer hold RUN/.lock right now? A non-blocking try; never waits."""
    lock = path / ".lock"
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def journal_rows(path: Path, stage: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(status, row) of a stage's journal, in input order; read-only, never blocks a writer
    (store.journal_entries). A journal entry may hold several rows (decode's instructions)."""
    for status, value in journal_entries(path, stage):
        for row in value if isinstance(value, list) else [value]:
            if isinstance(row, dict):
                yield _JOURNAL_STATUS.get(status, status), row


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _short(value: Any, n: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= n else text[: n - 1] + "…"


class Run:
    """One run directory, read-only."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory")
        self.config = self.json("config.json")
        self.kind = self._kind()

    # ------------------------------------------------------------------ what it is

    def _kind(self) -> str:
        if self.config.get("kind") == "codeclm":
            return "generate"
        stage = self.config.get("stage")
        if stage == "judge":
            return "compare"
        if stage in FILE_STAGES:
            return str(stage)
        return "unknown"

    def json(self, name: str) -> dict[str, Any]:
        """RUN/name (config.json, manifest.json, stages.json, summary.json, report.json) as a
        dict; {} when it is missing or not (yet) a JSON object."""
        value = read_json(self.path / name)
        return value if isinstance(value, dict) else {}

    def live(self) -> bool:
        return is_live(self.path)

    def status(self) -> str:
        """live, complete, or incomplete (stopped before it finished)."""
        if self.live():
            return "live"
        complete = self.json("manifest.json").get("status") == "complete"
        return "complete" if complete else "incomplete"

    def models(self) -> dict[str, str]:
        """Role -> model spec, redacted (never a key)."""
        if self.kind == "generate":
            models = self.json("stages.json").get("_models") or {}
        else:
            models = self.config.get("models") or {}
        return {role: redact_spec(str(spec)) for role, spec in models.items()}

    def settings(self) -> dict[str, Any]:
        """The options the run ran with: per stage for generate, the config otherwise."""
        if self.kind == "generate":
            return {name: _redact_tree(entry.get("config", {}))
                    for name, entry in self.json("stages.json").items()
                    if not name.startswith("_") and isinstance(entry, dict)}
        cfg = {k: v for k, v in self.config.items() if k != "template"}
        return _redact_tree(cfg)

    def usage(self) -> dict[str, dict[str, Any]]:
        """Tokens, requests and dollars per stage (generate) or for the run."""
        if self.kind == "generate":
            out = {}
            for name, entry in self.json("stages.json").items():
                if name.startswith("_") or not isinstance(entry, dict):
                    continue
                if entry.get("stats"):
                    out[name] = dict(entry["stats"])
            return out
        total = self.json("manifest.json").get("usage_total") or {}
        return {self.config.get("stage", self.kind): dict(total)} if total else {}

    def cost(self, usage: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Dollars, tokens and requests of the whole run (from `usage()`, or `usage` given)."""
        usage = self.usage() if usage is None else usage
        usd = sum(float(u.get("usd") or 0) for u in usage.values())
        tokens = sum(int(u.get("prompt_tokens") or 0) + int(u.get("completion_tokens") or 0)
                     for u in usage.values())
        requests = sum(int(u.get("requests") or 0) for u in usage.values())
        return {"usd": round(usd, 6), "tokens": tokens, "requests": requests}

    def theta(self) -> float | None:
        if self.kind != "generate":
            return None
        loop = self.json("stages.json").get("loop") or {}
        return _float((loop.get("config") or {}).get("theta"))

    # ------------------------------------------------------------------ rows

    def rows(self) -> Iterator[ViewRow]:
        """Every row, each with its latest hand review (RUN/review.jsonl) if any."""
        review = load_review(self.path)
        if self.kind == "generate":
            it = self._generate_rows()
        elif self.kind == "compare":
            it = self._compare_rows()
        else:
            it = self._file_rows()
        for row in it:
            row.review = review.get(row.key)
            yield row

    def _published(self, *names: str) -> bool:
        return not self.live() and all((self.path / n).exists() for n in names)

    def _file_rows(self) -> Iterator[ViewRow]:
        stage = str(self.config.get("stage") or self.kind)
        model = next(iter(self.models().values()), "")
        fields = self.config.get("fields") or {}
        instr_col = fields.get("instruction", "instruction")
        if self._published("output.jsonl"):
            source: Iterator[tuple[str, dict[str, Any]]] = _chain(
                ((KEPT, r) for r in _read_jsonl(self.path / "output.jsonl")),
                ((REJECTED, r) for r in _read_jsonl(self.path / "rejected.jsonl")),
                ((FAILED, r) for r in _read_jsonl(self.path / "failed.jsonl")))
        else:
            source = journal_rows(self.path, stage)
        for status, row in source:
            meta = row.get(META) or {}
            text = row.get(instr_col) or row.get("prompt") or row.get("question") or ""
            yield ViewRow(key=str(meta.get("id", "")), stage=stage, status=status, data=row,
                          reason=str(meta.get("reason") or ""), score=_float(row.get("score")),
                          model=model, text=_short(text))

    def _compare_rows(self) -> Iterator[ViewRow]:
        model = self.models().get("judge", "")
        if self._published("output.jsonl"):
            source: Iterator[tuple[str, dict[str, Any]]] = _chain(
                ((KEPT, r) for r in _read_jsonl(self.path / "output.jsonl")),
                ((FAILED, r) for r in _read_jsonl(self.path / "failed.jsonl")))
        else:
            source = journal_rows(self.path, "judge")
        for status, row in source:
            meta = row.get(META) or {}
            yield ViewRow(key=f"{row.get('bench', '')}:{row.get('key', '')}",
                          stage=str(row.get("bench") or "judge"), status=status, data=row,
                          reason=str(meta.get("reason") or row.get("codeclm") or ""),
                          score=_float(row.get("mean_a")),
                          gap=_diff(row.get("mean_a"), row.get("mean_b")),
                          use_case=str(row.get("category") or ""), model=model,
                          text=_short(row.get("question") or ""))

    def _generate_rows(self) -> Iterator[ViewRow]:
        models = self.models()
        strong = models.get("strong", "")
        if self._published("output.jsonl"):
            loop: Iterator[tuple[str, dict[str, Any]]] = _chain(
                ((KEPT, r) for r in _read_jsonl(self.path / "output.jsonl")),
                ((REJECTED, r) for r in _read_jsonl(self.path / "rejected.jsonl")),
                ((FAILED, r) for r in _read_jsonl(self.path / "failed.jsonl")))
        else:
            loop = journal_rows(self.path, "loop")
        for status, row in loop:
            yield self._gen_row("loop", status, row, strong)
        rejects = self.path / "rejects"
        if rejects.is_dir():
            for f in sorted(rejects.glob("*.jsonl")):
                for row in _read_jsonl(f):
                    yield self._gen_row(f.stem, str((row.get(META) or {}).get("status")),
                                        row, strong)

    def _gen_row(self, stage: str, status: str, row: dict[str, Any], model: str) -> ViewRow:
        meta = row.get(META) or {}
        key = row.get("id") or meta.get("id") or ""
        if stage != "loop":
            key = f"{stage}:{key}"
        reason = meta.get("reason") or ""
        if not reason and status == KEPT:
            reason = str(row.get("decision") or "")
        text = row.get("instruction") or row.get("use_case") or ""
        skills = row.get("skills") if isinstance(row.get("skills"), list) else []
        iteration = row.get("iteration")
        return ViewRow(key=str(key), stage=stage, status=status, data=row, reason=str(reason),
                       score=_float(row.get("strong_score")), gap=_float(row.get("gap")),
                       iteration=int(iteration) if isinstance(iteration, int) else None,
                       use_case=str(row.get("use_case") or ""),
                       skills=[str(s) for s in skills], model=model, text=_short(text))

    # ------------------------------------------------------------------ lineage

    def lineage(self, row: ViewRow) -> dict[str, Any]:
        """Everything that led to `row`, as plain data for a template or a card."""
        data = row.data
        if self.kind != "generate":
            return {"kind": self.kind, "row": data}
        seeds = {str(r.get("seed_id")): r for r in _read_jsonl(self.path / "encoded.jsonl")}
        meta = next((m for m in _read_jsonl(self.path / "metadata.jsonl")
                     if m.get("id") == data.get("metadata_id")), None)
        rubric = next((r for r in _read_jsonl(self.path / "rubrics.jsonl")
                       if r.get("metadata_id") == data.get("metadata_id")), None)
        steps = [*(data.get("history") or []),
                 {k: data.get(k) for k in ("iteration", "instruction", "action", "scores",
                                           "judge_text", "strong_score", "target_score",
                                           "gap", "decision")}]
        return {
            "kind": "generate",
            "seeds": [seeds.get(str(s)) or {"seed_id": s} for s in data.get("seed_ids") or []],
            "metadata": meta or {"id": data.get("metadata_id"), "use_case": data.get("use_case"),
                                 "skills": data.get("skills")},
            "rubric": rubric,
            "steps": [s for s in steps if s.get("instruction") is not None],
            "row": data,
        }

    # ------------------------------------------------------------------ metadata pool

    def decoded(self) -> bool:
        """Has `decode` run on the pool (editing it now redoes decode and what follows)?"""
        return "decode" in self.json("stages.json")


def _chain(*its: Iterator[Any]) -> Iterator[Any]:
    for it in its:
        yield from it


def _diff(a: Any, b: Any) -> float | None:
    fa, fb = _float(a), _float(b)
    return None if fa is None or fb is None else fa - fb


def _redact_tree(value: Any) -> Any:
    """Model specs anywhere in a config, redacted (configs already are; this is belt and
    braces for anything we show or publish)."""
    if isinstance(value, dict):
        return {k: (redact_spec(v) if isinstance(v, str) and k in _SPEC_KEYS else _redact_tree(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_tree(v) for v in value]
    return value


_SPEC_KEYS = {"strong", "target", "judge", "model", "baseline"}


# ---------------------------------------------------------------------- hand review

def load_review(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """key -> the latest hand review {status, note, at} from RUN/review.jsonl (append-only)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in _read_jsonl(Path(path) / REVIEW_FILE):
        key, status = entry.get("key"), entry.get("status")
        if isinstance(key, str) and status in (KEPT, REJECTED):
            out[key] = entry
        elif isinstance(key, str) and status == "clear":
            out.pop(key, None)
    return out


def append_review(path: str | os.PathLike[str], key: str, status: str, note: str = "") -> dict[str, Any]:
    """Append one hand decision to RUN/review.jsonl (one line, one write, fsynced)."""
    if status not in (KEPT, REJECTED, "clear"):
        raise ValueError(f"bad review status {status!r}")
    entry = {"key": key, "status": status, "note": note,
             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
    fd = os.open(Path(path) / REVIEW_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def review_decision(review: dict[str, dict[str, Any]], key: str) -> str | None:
    """kept / rejected when a person decided about `key` by hand, else None."""
    entry = review.get(key)
    return None if entry is None else str(entry["status"])


def file_row_key(row: dict[str, Any]) -> str:
    """The review key of a row of a file command's output (its record id)."""
    return str((row.get(META) or {}).get("id", ""))


def review_adjust(run_dir: str | os.PathLike[str] | None, rows_path: str | os.PathLike[str],
                  keep: set[int]) -> set[int]:
    """`select`'s hook: positions in `rows_path` (a rate run's output.jsonl) to keep once
    RUN/review.jsonl is honoured: marked rejected by hand -> dropped, marked kept -> kept."""
    if run_dir is None or not (Path(run_dir) / REVIEW_FILE).exists():
        return keep
    review = load_review(run_dir)
    if not review:
        return keep
    out = set(keep)
    for i, row in enumerate(_read_jsonl(Path(rows_path))):
        decision = review_decision(review, file_row_key(row))
        if decision == REJECTED:
            out.discard(i)
        elif decision == KEPT:
            out.add(i)
    return out
