"""`synthcodec complete` end to end on the fake model, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import read_jsonl, synthcodec, write_jsonl


def test_complete_writes_outputs_and_rerun_sends_nothing(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"q{i}"} for i in range(12)])
    out = tmp_path / "run"
    first = synthcodec("complete", str(src), "--field", "prompt=text", "-m", "fake:echo",
                       "-o", str(out))
    assert first.returncode == 0, first.stderr
    rows = read_jsonl(out / "output.jsonl")
    assert [r["response"] for r in rows] == [f"echo: q{i}" for i in range(12)]
    assert [r["id"] for r in rows] == list(range(12))
    assert "requests sent 12" in first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["ok"] == 12

    second = synthcodec("complete", str(src), "--field", "prompt=text", "-m", "fake:echo",
                        "-o", str(out))
    assert second.returncode == 0
    assert "requests sent 0" in second.stderr
    assert read_jsonl(out / "output.jsonl") == rows


def test_rerun_in_new_dir_is_served_from_cache(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(5)])
    synthcodec("complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "a"))
    again = synthcodec("complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "b"))
    assert "requests sent 0 | cache hits 5" in again.stderr
    changed = synthcodec("complete", str(src), "-m", "fake:echo", "--system", "be brief",
                         "-o", str(tmp_path / "c"))
    assert "requests sent 5 | cache hits 0" in changed.stderr
    nocache = synthcodec("complete", str(src), "-m", "fake:echo", "--no-cache",
                         "-o", str(tmp_path / "d"))
    assert "requests sent 5 | cache hits 0" in nocache.stderr


def test_bad_input_exits_2_naming_the_place_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": 3}\n')
    result = synthcodec("complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"{src}:3: field 'prompt': expected str, got int" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_changed_config_in_same_run_dir_is_refused(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}])
    synthcodec("complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "run"))
    result = synthcodec("complete", str(src), "-m", "fake:echo", "--max-tokens", "9",
                        "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "different configuration (changed: max_tokens)" in result.stderr


def test_unknown_model_spec_is_a_clear_error(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}])
    result = synthcodec("complete", str(src), "-m", "nonsense", "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "unknown model spec 'nonsense'" in result.stderr


def test_help_explains_models_and_parallelism() -> None:
    result = synthcodec("complete", "--help")
    assert result.returncode == 0
    assert "NAME@http://HOST:PORT/v1" in result.stdout
    assert "run one process per part" in " ".join(result.stdout.split())
