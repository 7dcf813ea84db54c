"""`synthcodec complete` end to end on the fake model, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_parquet_output_holds_every_column_of_every_row(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    # A column null in the first rows, and one that only a later row has.
    rows = [{"text": f"q{i}", "note": None} for i in range(3)] + \
        [{"text": "q3", "note": "late", "source": "web"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "run"
    done = synthcodec("complete", str(src), "--field", "prompt=text", "-m", "fake:echo",
                      "--parquet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out / "output.parquet").to_pylist() == [
        {"source": None, **row} for row in read_jsonl(out / "output.jsonl")]


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
    help_text = " ".join(result.stdout.split())
    assert "run with '--executor ray'" in help_text and "python -m llama_cpp.server" in help_text


# ---- --json / --json-schema ----------------------------------------------------------------

def _stats(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=5) as resp:
        return json.loads(resp.read())


def _score_prompts(n: int) -> list[dict]:
    return [{"id": i, "prompt": f'Item {i}: reply with exactly {{"score": {i % 6}}}'}
            for i in range(n)]


def test_w7_json_invalid_first_answers_are_reasked_cut_ones_fail_with_the_reason(
        tmp_path: Path) -> None:
    from synthcodec.records import reason_of
    from tests.mock_server import hash_fraction, serve_in_subprocess

    n, invalid_rate, cut_rate = 60, 0.2, 0.1
    rows = _score_prompts(n)
    cut = {r["id"] for r in rows if hash_fraction("truncate", r["prompt"]) < cut_rate}
    invalid = {r["id"] for r in rows
               if hash_fraction("invalid", r["prompt"]) < invalid_rate} - cut
    assert cut and invalid  # the hash picks some of each (fixed prompts: deterministic)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    with serve_in_subprocess(reply_json_in_prompt=True, invalid_json_first_rate=invalid_rate,
                             truncate_rate=cut_rate) as (_, url):
        result = synthcodec("complete", str(src), "-m", f"mock-model@{url}", "--json", "-j", "8",
                            "-o", str(tmp_path / "run"), "-q")
        stats = _stats(url)
    assert result.returncode == 0, result.stderr
    out = read_jsonl(tmp_path / "run" / "output.jsonl")
    # every valid row carries the parsed object, and it is the right one (0 kept wrong)
    assert {r["id"] for r in out} == set(range(n)) - cut
    assert all(r["response"] == {"score": r["id"] % 6} for r in out)
    failed = read_jsonl(tmp_path / "run" / "failed.jsonl")
    assert {r["id"] for r in failed} == cut
    assert all("finish_reason=length" in reason_of(r) and "max_tokens=512" in reason_of(r)
               for r in failed)
    # one request per row, one re-ask per invalid first answer, no re-ask of a cut-off one
    assert stats["total_requests"] == n + len(invalid)


def test_json_schema_is_sent_natively_and_enforced(tmp_path: Path) -> None:
    from synthcodec.records import reason_of
    from tests.mock_server import serve_in_subprocess

    schema = {"type": "object", "properties": {"score": {"type": "integer", "maximum": 4}},
              "required": ["score"]}
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(schema))
    src = write_jsonl(tmp_path / "in.jsonl", _score_prompts(6))  # scores 0..5: 5 breaks it
    with serve_in_subprocess(reply_json_in_prompt=True) as (_, url):
        result = synthcodec("complete", str(src), "-m", f"mock-model@{url}", "--json-schema",
                            str(schema_file), "--json-reasks", "1", "-o", str(tmp_path / "run"),
                            "-q")
        stats = _stats(url)
    assert result.returncode == 0, result.stderr
    assert [r["response"] for r in read_jsonl(tmp_path / "run" / "output.jsonl")] == [
        {"score": k} for k in range(5)]
    (failed,) = read_jsonl(tmp_path / "run" / "failed.jsonl")
    assert failed["id"] == 5
    assert "no valid JSON after 2 tries" in reason_of(failed)
    assert ("does not match the schema at score: 5 is greater than the maximum of 4"
            in reason_of(failed))
    assert stats["total_requests"] == 6 + 1


def test_json_schema_reaches_the_backend_as_response_format() -> None:
    from synthcodec.llm import Request
    from synthcodec.llm.openai_http import OpenAIHTTPBackend

    schema = {"type": "object"}
    body = OpenAIHTTPBackend("m", "http://127.0.0.1:1/v1").body(
        Request.chat("hi", json_schema=schema))
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": schema}}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON (line 1 column 2"),
    ('{"type": "objekt"}', "not a valid JSON Schema at type:"),
    ("[1, 2]", "a JSON Schema must be a JSON object, got list"),
])
def test_bad_json_schema_file_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(content)
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}])
    result = synthcodec("complete", str(src), "-m", "fake:echo", "--json-schema",
                        str(schema_file), "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"--json-schema {schema_file}: {message}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run").exists()


def test_json_gives_the_models_objects_parsed(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcodec.llm import FakeBackend, Request
    from tests.helpers import cli

    def model(request: Request) -> str:  # JSON only when JSON mode asked for a schema
        prompt = request.messages[-1]["content"]
        if request.json_schema is None:
            return f"plain text about {prompt}"
        return f'```json\n{{"about": "{prompt}", "n": {len(prompt)}}}\n```'

    monkeypatch.setattr(FakeBackend, "from_spec", classmethod(lambda cls, spec: cls(model)))
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}, {"prompt": "bcd"}])
    assert cli("complete", str(src), "-m", "fake:echo", "--json", "-q",
               "-o", str(tmp_path / "run")) == 0
    assert [r["response"] for r in read_jsonl(tmp_path / "run" / "output.jsonl")] == [
        {"about": "a", "n": 1}, {"about": "bcd", "n": 3}]
