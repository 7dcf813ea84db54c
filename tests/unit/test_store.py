"""The run directory: config checks, atomic publish, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthcodec.errors import UserError
from synthcodec.store import OK, RunDir, atomic_writer


def test_resume_needs_the_same_config(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r").open({"model": "a", "t": 0})
    run.journal("s").record("x", 0, OK, [{"v": 1}])
    run.close()
    with pytest.raises(UserError, match=r"different configuration \(changed: model\)"):
        RunDir(tmp_path / "r").open({"model": "b", "t": 0})
    same = RunDir(tmp_path / "r").open({"model": "a", "t": 0})
    assert same.journal("s").finished("x")
    same.close()
    fresh = RunDir(tmp_path / "r").open({"model": "b", "t": 0}, overwrite=True)
    assert not fresh.journal("s").finished("x")


def test_atomic_writer_leaves_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as fh:
            fh.write("new, half written")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_publish_and_manifest(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r").open({"k": 1})
    assert run.publish_jsonl("o.jsonl", iter([{"a": 1}, {"a": 2}])) == 2
    manifest = run.write_manifest(counts={"ok": 2})
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["counts"] == {"ok": 2}
    from synthcodec import __version__

    assert manifest["synthcodec_version"] == __version__
    assert manifest["versions"]["aiohttp"] and manifest["written_at"].endswith("Z")


def test_merge_never_lets_a_failed_row_replace_a_finished_one(tmp_path: Path) -> None:
    from synthcodec.store import FAILED, REJECTED, Journal, connect

    run = RunDir(tmp_path / "run").open({"x": 1})
    try:
        journal = run.journal("s")
        journal.record("a", 0, OK, ["kept"])
        journal.record("b", 1, REJECTED, {"why": "no"})
        journal.record("c", 2, FAILED, {"why": "timeout"})
        shard = Journal(connect(tmp_path / "shard.sqlite"), "s")
        shard.record("a", 0, FAILED, {"why": "later failure"})  # must not undo the kept row
        shard.record("b", 1, FAILED, {"why": "later failure"})
        shard.record("c", 2, OK, ["retried"])  # a retried failure is replaced
        shard.record("d", 3, FAILED, {"why": "new"})
        journal.merge(shard.raw_rows())
        journal.merge(shard.raw_rows())  # merging twice changes nothing
        got = [(rid, idx, status, json.loads(data)) for rid, idx, status, data in journal.raw_rows()]
        assert got == [("a", 0, OK, ["kept"]), ("b", 1, REJECTED, {"why": "no"}),
                       ("c", 2, OK, ["retried"]), ("d", 3, FAILED, {"why": "new"})]
        assert journal.finished("c") and not journal.finished("d")
        shard.db.close()
    finally:
        run.close()


def test_stage_ledger_says_what_changed(tmp_path: Path) -> None:
    from synthcodec.store import StageLedger, changed_keys

    ledger = StageLedger(tmp_path / "stages.json")
    assert ledger.change("s", {"a": 1}, "in1") is None  # never ran
    ledger.start("s", {"a": 1, "b": 2}, "in1")
    again = StageLedger(tmp_path / "stages.json")  # as saved
    assert again.change("s", {"a": 1, "b": 2}, "in1") is None
    assert again.change("s", {"a": 1, "b": 3, "c": 0}, "in1") == ("settings", ["b", "c"])
    assert again.change("s", {"a": 1, "b": 3}, "in2") == ("settings", ["b"])  # settings first
    assert again.change("s", {"a": 1, "b": 2}, "in2") == ("input", [])
    assert again.change("s", {"a": 1, "b": 2}) is None  # no input hash given: not compared
    assert changed_keys({"a": 1, "b": 2}, {"b": 2}) == ["a"]
