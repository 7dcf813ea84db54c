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
