"""The CodecLM run directory: one RunDir, a journal per stage, and each stage's settings.

Stages run as separate commands over one RUN/, each with its own options, so the RunDir
config is constant ("a CodecLM run") and `stages.json` (store.StageLedger, the one resume
scheme) holds what each stage ran with:

- changed settings for a stage that already ran are an error unless --overwrite, which
  clears that stage's journal (the request cache keeps the redo cheap);
- a changed input file (an earlier stage re-ran, or the user edited it) clears the
  stage's journal automatically: unchanged records replay from the cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from synthcodec.errors import UserError
from synthcodec.io import iter_rows
from synthcodec.judgecheck import Say, silent
from synthcodec.store import (
    FAILED,
    REJECTED,
    STAGES_FILE,
    Journal,
    RunDir,
    StageLedger,
    hash_file,
    hash_value,
)

if TYPE_CHECKING:
    from synthcodec.session import Models

RUN_KIND = {"kind": "codeclm", "layout": 1}
# stages.json notes of the run (not stages): the model specs every stage command reuses,
# and what the last invocation's money lines said.
MODELS_KEY, COST_KEY = "_models", "_cost"


class Workspace:
    def __init__(self, path: str | Path, *, overwrite: bool = False, say: Say = silent) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.say = say  # hears why a stage is redone (nothing is printed here)
        self.models: Models | None = None  # this invocation's, once open (for the manifest)
        self.run = RunDir(self.path)
        self.ledger = StageLedger(self.path / STAGES_FILE)

    def open(self) -> Self:
        # The RunDir check still stops us from writing into another command's run.
        self.run.open(dict(RUN_KIND), overwrite=self.overwrite)
        self.ledger = StageLedger(self.path / STAGES_FILE)
        return self

    @property
    def state(self) -> dict[str, Any]:
        """stages.json: each stage's entry, and the run-level notes under "_" keys."""
        return self.ledger.state

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.run.close()

    # ------------------------------------------------------------------ files

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return self.file(name).exists()

    def rows(self, name: str, *, made_by: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """(line, row) of RUN/name; a missing file names the command that writes it."""
        if not self.exists(name):
            hint = f": run `synthcodec {made_by} {self.path}` first" if made_by else ""
            raise UserError(f"{self.file(name)} does not exist{hint}")
        return iter_rows(self.file(name))

    def sha(self, *names: str) -> str:
        return hash_value([hash_file(self.file(n)) if self.exists(n) else None for n in names])

    def publish(self, name: str, rows: Iterable[Any]) -> int:
        """Atomically write RUN/name and remember its hash (to spot later hand edits)."""
        n = self.run.publish_jsonl(name, rows)
        self.state.setdefault("_published", {})[name] = hash_file(self.file(name))
        self.save()
        return n

    def edited_by_hand(self, name: str) -> bool:
        """RUN/name exists and is not the file we last wrote there."""
        if not self.exists(name):
            return False
        return self.state.get("_published", {}).get(name) != hash_file(self.file(name))

    # ------------------------------------------------------------------ stages

    def begin(self, stage: str, config: dict[str, Any], input_sha: str | None = None,
              journal: bool = True, grown: bool = False) -> Journal | None:
        """Check `stage`'s settings against its last run and return its journal. `grown`:
        this invocation appended to the stage's input itself (generate drew more of the
        pool), so the records already journaled stay valid."""
        table = self.run.journal(stage) if journal else None
        change = self.ledger.change(stage, config, input_sha)
        if grown and change is not None and change[0] == "input":
            change = None
        if change is not None and change[0] == "settings":
            changed = ", ".join(change[1])
            if not self.overwrite:
                raise UserError(
                    f"{stage} already ran in {self.path} with other settings (changed: "
                    f"{changed}). Add --overwrite to redo it with the new ones "
                    "(cached requests are reused), or use another -o directory.")
            self.say(f"{stage}: settings changed ({changed}): redoing it")
        elif change is not None:
            self.say(f"{stage}: its input changed since it last ran: redoing it "
                 "(unchanged records come back from the request cache)")
        if change is not None and table is not None:
            table.clear()
        self.ledger.start(stage, config, input_sha)
        return table

    def finish(self, stage: str, *, stats: dict[str, int] | None = None, **info: Any) -> None:
        """Record a stage's outputs and add this invocation's model usage to its total."""
        self.ledger.finish(stage, stats=stats, **info)

    def stage_info(self, stage: str) -> dict[str, Any]:
        return self.ledger.entry(stage)

    def total_stats(self) -> dict[str, int]:
        return self.ledger.total_stats()

    def publish_rejects(self, stage: str, journal: Journal) -> int:
        """RUN/rejects/<stage>.jsonl: the stage's rejected and failed records, in the row
        envelope of every run (status and reason under `_synthcodec`)."""
        rows = list(journal.rows(REJECTED)) + list(journal.rows(FAILED))
        name = f"rejects/{stage}.jsonl"
        if rows or self.exists(name):
            self.file("rejects").mkdir(exist_ok=True)
            self.run.publish_jsonl(name, rows)
        return len(rows)

    def save(self) -> None:
        self.ledger.save()

