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


# ---- issue 18: never invalid JSON, and a full disk is one line ----------------------------

def test_nothing_is_written_as_invalid_json(tmp_path: Path) -> None:
    from synthcodec.store import dumps, write_json

    assert dumps({"a": 1.5}) == '{"a": 1.5}'
    with pytest.raises(ValueError, match=r"invalid JSON: rows\[1\].w is NaN or Infinity"):
        dumps({"rows": [{"w": 1.0}, {"w": float("nan")}]})
    run = RunDir(tmp_path / "r").open({"t": 0})
    with pytest.raises(ValueError, match=r"invalid JSON: \[0\].score is NaN"):
        run.journal("s").record("x", 0, OK, [{"score": float("inf")}])
    assert list(run.journal("s").rows(OK)) == []
    with pytest.raises(ValueError, match=r"invalid JSON"):
        run.publish_jsonl("output.jsonl", [{"w": float("nan")}])
    assert not (tmp_path / "r" / "output.jsonl").exists()
    run.close()
    with pytest.raises(ValueError, match=r"invalid JSON: usd is NaN"):
        write_json(tmp_path / "m.json", {"usd": float("-inf")})
    assert not (tmp_path / "m.json").exists()


def test_a_model_reply_with_nan_is_not_valid_json() -> None:
    from synthcodec.llm import Completion
    from synthcodec.llm.json_reply import ANY_OBJECT, JsonReply

    reply = JsonReply(ANY_OBJECT, max_tokens=100)
    assert reply.parse(Completion(text='{"score": 4.5}', finish_reason="stop")) == {"score": 4.5}
    for text in ('{"score": NaN}', '{"score": -Infinity}', '{"score": 1e400}'):
        with pytest.raises(ValueError, match="not valid JSON"):
            reply.parse(Completion(text=text, finish_reason="stop"))


def test_a_full_disk_while_publishing_is_one_line_exit_5_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import os

    from tests.helpers import cli, read_jsonl, write_jsonl

    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(20)])
    run = tmp_path / "run"
    real_replace = os.replace

    def full(src_path: str, dst: str) -> None:
        if str(dst).endswith("output.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src_path, dst)

    monkeypatch.setattr(os, "replace", full)
    args = ("complete", str(src), "-m", "fake:echo", "--no-cache", "-o", str(run))
    assert cli(*args) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: cannot write {run / 'output.jsonl'}: No space left on device; "
                       "make room (or raise the limit) and run the same command again: what "
                       "was finished is kept")
    assert not any("Traceback" in line for line in err)
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.json", "journal.sqlite"]
    monkeypatch.setattr(os, "replace", real_replace)
    assert cli(*args) == 0
    assert "requests sent 0" in capsys.readouterr().err  # all 20 were journaled before
    assert [r["response"] for r in read_jsonl(run / "output.jsonl")] == [
        f"echo: q{i}" for i in range(20)]


def test_a_file_size_limit_while_journaling_is_one_line_exit_5(tmp_path: Path) -> None:
    import resource
    import subprocess
    import sys

    from tests.helpers import cli_env, read_jsonl, write_jsonl

    rows = [{"prompt": f"q{i} " + "x" * 2000} for i in range(200)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "synthcodec", "complete", str(src), "-m", "fake:echo",
            "-o", str(run), "--cache", str(tmp_path / "cache.sqlite"), "--quiet"]

    def limit() -> None:  # `ulimit -f 100`: no file may grow past 100 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, 100 * 1024))

    cut = subprocess.run(args, capture_output=True, text=True, env=cli_env(), preexec_fn=limit,
                         timeout=120)
    assert cut.returncode == 5, cut.stderr
    # The journal or the request cache, whichever passes the limit first (both grow per
    # record; the cache commits every 256 rows or 0.5 s): one line naming that file.
    lines = cut.stderr.strip().splitlines()
    assert lines in [[
        f"error: cannot write {path}: disk I/O error; make room (or raise the limit) and run "
        "the same command again: what was finished is kept"]
        for path in (run / "journal.sqlite", tmp_path / "cache.sqlite")], cut.stderr
    assert not (run / "output.jsonl").exists() and not (run / "manifest.json").exists()
    done = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    # Every row once, in input order, whole: none lost or cut short by the interrupted write.
    out = read_jsonl(run / "output.jsonl")
    assert [(r["prompt"], r["response"]) for r in out] == [
        (row["prompt"], "echo: " + row["prompt"]) for row in rows]
    assert [r["_synthcodec"]["index"] for r in out] == list(range(200))
