"""The CodecLM run directory's files: their names, reading them, publishing them.

A CodecLM run is one RUN/ written by `generate` or by its stage commands one at a time,
each with its own options, through the one run driver (driver.run_plans). So the RunDir
config is constant ("a CodecLM run") and RUN/stages.json (store.StageLedger, the one resume
scheme) holds what each stage ran with, the model specs every stage command reuses, and the
hashes of the files we published (to notice a hand-edited metadata.jsonl).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.executors import Item
from synthcodec.io import FieldSpec, iter_rows
from synthcodec.llm import redact_spec
from synthcodec.records import Record, record_id
from synthcodec.store import (
    FAILED,
    OK,
    REJECTED,
    STAGES_FILE,
    Journal,
    RunDir,
    StageLedger,
    hash_file,
    hash_value,
)

RUN_KIND = {"kind": "codeclm", "layout": 1}
# stages.json notes of the run (not stages): the model specs every stage command reuses,
# what the last invocation's money lines said, and the hashes of the files we wrote.
MODELS_KEY, COST_KEY, PUBLISHED_KEY = "_models", "_cost", "_published"

ENCODED, METADATA, INSTRUCTIONS, RUBRICS = ("encoded.jsonl", "metadata.jsonl",
                                            "instructions.jsonl", "rubrics.jsonl")
# The run layout of every command (docs/run-layout.md): kept, rejected and failed rows.
OUTPUT, REJECTED_FILE, FAILED_FILE = "output.jsonl", "rejected.jsonl", "failed.jsonl"
SEED_FIELDS = [FieldSpec("instruction"), FieldSpec("id", required=False, kind=(str, int))]


def ledger(path: Path) -> StageLedger:
    """RUN/stages.json as it is on disk (read-only use: the open run's is `RunDir.ledger`)."""
    return StageLedger(path / STAGES_FILE)


def rows(path: Path, name: str, *, made_by: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of RUN/name; a missing file names the command that writes it."""
    if not (path / name).exists():
        hint = f": run `synthcodec {made_by} {path}` first" if made_by else ""
        raise UserError(f"{path / name} does not exist{hint}")
    return iter_rows(path / name)


def sha(path: Path, *names: str) -> str:
    """One hash of the files (a missing one counts as missing): a stage's input hash."""
    return hash_value([hash_file(path / n) if (path / n).exists() else None for n in names])


def publish(run: RunDir, name: str, data: Iterable[Any]) -> int:
    """Atomically write RUN/name and remember its hash (to spot later hand edits)."""
    n = run.publish_jsonl(name, data)
    run.ledger.state.setdefault(PUBLISHED_KEY, {})[name] = hash_file(run.path / name)
    run.ledger.save()
    return n


def edited_by_hand(run: RunDir, name: str) -> bool:
    """RUN/name exists and is not the file we last wrote there."""
    if not (run.path / name).exists():
        return False
    return run.ledger.state.get(PUBLISHED_KEY, {}).get(name) != hash_file(run.path / name)


def publish_rejects(run: RunDir, stage: str, journal: Journal) -> int:
    """RUN/rejects/<stage>.jsonl: the stage's rejected and failed records, in the row
    envelope of every run (status and reason under `_synthcodec`)."""
    dropped = list(journal.rows(REJECTED)) + list(journal.rows(FAILED))
    name = f"rejects/{stage}.jsonl"
    if dropped or (run.path / name).exists():
        (run.path / "rejects").mkdir(exist_ok=True)
        run.publish_jsonl(name, dropped)
    return len(dropped)


def kept_rows(journal: Journal) -> list[Record]:
    """The stage's output rows, in input order (a step may return several per record)."""
    return [r for outputs in journal.rows(OK)
            for r in (outputs if isinstance(outputs, list) else [outputs])]


def load_candidates(path: Path, name: str, made_by: str) -> list[Item]:
    return [Item(record_id(idx, row), idx, row)
            for idx, (_, row) in enumerate(rows(path, name, made_by=made_by))]


def load_actions(path: Path) -> dict[str, list[str]]:
    """The rubric actions per metadata id (rubrics.jsonl)."""
    return {str(row["metadata_id"]): list(row.get("actions") or [])
            for _, row in rows(path, RUBRICS, made_by="rubrics")}


def resolve_models(path: Path, **given: str | None) -> tuple[dict[str, str], dict[str, Any]]:
    """Model specs for this command: given on the command line, else those the run used;
    and the stages.json note that records them (without credentials: a later stage reuses
    the spec, never a secret)."""
    known: dict[str, str] = dict(ledger(path).state.get(MODELS_KEY, {}))
    out: dict[str, str] = {}
    for role, spec in given.items():
        spec = spec or known.get(role)
        if not spec:
            raise UserError(f"no --{role} model: give --{role} MODEL (no earlier stage of "
                            f"{path} recorded one)")
        if spec != redact_spec(spec) and not given.get(role):
            raise UserError(f"give --{role} again: the credentials in its URL are not stored "
                            f"in {path}")
        out[role] = spec
    note = {MODELS_KEY: {**known, **{role: redact_spec(spec) for role, spec in out.items()}}}
    return out, note
