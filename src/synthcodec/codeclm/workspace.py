"""The CodecLM run directory: one RunDir, a journal per stage, and each stage's settings.

Stages run as separate commands over one RUN/, each with its own options, so the RunDir
config is constant ("a CodecLM run") and `stages.json` holds what each stage ran with:

- changed settings for a stage that already ran are an error unless --overwrite, which
  clears that stage's journal (the request cache keeps the redo cheap);
- a changed input file (an earlier stage re-ran, or the user edited it) clears the
  stage's journal automatically: unchanged records replay from the cache.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from synthcodec.errors import UserError
from synthcodec.io import iter_rows
from synthcodec.store import FAILED, REJECTED, Journal, RunDir, hash_file, hash_value, write_json

RUN_KIND = {"kind": "codeclm", "layout": 1}
STATE = "stages.json"


def note(message: str) -> None:
    print(message, file=sys.stderr)


class Workspace:
    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.run = RunDir(self.path)
        self.state: dict[str, Any] = {}

    def open(self) -> Self:
        # The RunDir check still stops us from writing into another command's run.
        self.run.open(dict(RUN_KIND), overwrite=self.overwrite)
        state_path = self.path / STATE
        self.state = json.loads(state_path.read_text("utf-8")) if state_path.exists() else {}
        return self

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
              journal: bool = True) -> Journal | None:
        """Check `stage`'s settings against its last run and return its journal."""
        prev = self.state.get(stage)
        table = self.run.journal(stage) if journal else None
        if prev is not None and prev["config_sha"] != hash_value(config):
            changed = sorted(k for k in set(prev["config"]) | set(config)
                             if prev["config"].get(k) != config.get(k))
            if not self.overwrite:
                raise UserError(
                    f"{stage} already ran in {self.path} with other settings (changed: "
                    f"{', '.join(changed)}). Add --overwrite to redo it with the new ones "
                    "(cached requests are reused), or use another -o directory.")
            note(f"{stage}: settings changed ({', '.join(changed)}): redoing it")
            if table is not None:
                table.clear()
        elif prev is not None and input_sha is not None and prev.get("input_sha") != input_sha:
            note(f"{stage}: its input changed since it last ran: redoing it "
                 "(unchanged records come back from the request cache)")
            if table is not None:
                table.clear()
        entry = self.state.setdefault(stage, {"stats": {}})
        entry.update(config=config, config_sha=hash_value(config), input_sha=input_sha)
        self.save()
        return table

    def finish(self, stage: str, *, stats: dict[str, int] | None = None, **info: Any) -> None:
        """Record a stage's outputs and add this invocation's model usage to its total."""
        entry = self.state.setdefault(stage, {"stats": {}})
        for key, value in (stats or {}).items():
            entry["stats"][key] = entry["stats"].get(key, 0) + value
        entry.update(info)
        self.save()

    def stage_info(self, stage: str) -> dict[str, Any]:
        return dict(self.state.get(stage) or {})

    def total_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for name, entry in self.state.items():
            if name.startswith("_"):
                continue
            for key, value in entry.get("stats", {}).items():
                total[key] = total.get(key, 0) + value
        return total

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
        write_json(self.file(STATE), self.state)

