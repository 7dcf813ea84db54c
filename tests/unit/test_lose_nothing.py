"""Lose nothing, leak nothing: a bad-input corpus through every command that reads input,
the accounted-for invariant, secret scans, exit codes and the small defects of issue 9.

The corpus is built here, one file per (format, failure), for each command's own fields.
Every bad file must stop the command with exit code 2, one line naming the file (and the
line and field where there is one), and leave the run directory absent.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthcodec import driver, session
from synthcodec.cli import main
from synthcodec.llm import check_spec, redact_spec
from synthcodec.llm.openai_http import OpenAIHTTPBackend
from synthcodec.llm.spec import parse_http
from synthcodec.records import reason_of
from tests.helpers import cli, read_jsonl, synthcodec, write_jsonl
from tests.mock_server import serve_in_subprocess

# ------------------------------------------------------------------------------ the corpus

# What each command reads from a row, and how to run it on a file into a run directory.
COMMANDS: dict[str, tuple[dict[str, Any], Callable[[str, str], list[str]]]] = {
    "complete": ({"prompt": "Say hi."},
                 lambda src, run: ["complete", src, "-m", "fake:echo", "-o", run, "-q"]),
    "rate": ({"instruction": "Add 2 and 2.", "input": "", "output": "4"},
             lambda src, run: ["rate", src, "--judge", "fake:echo", "-o", run, "-q"]),
    "generate": ({"instruction": "Write a haiku about rain."},
                 lambda src, run: ["generate", src, "--strong", "fake:echo", "--target",
                                   "fake:echo", "-n", "1", "-o", run, "-q"]),
}
REQUIRED = {"complete": "prompt", "rate": "instruction", "generate": "instruction"}


def _write(path: Path, fmt: str, rows: list[dict[str, Any]]) -> Path:
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "json":
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    elif fmt == "csv":
        cols = list(dict.fromkeys(k for r in rows for k in r))
        lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _bad_file(tmp: Path, command: str, fmt: str, failure: str) -> tuple[Path, int | None, str | None]:
    """(file, line it names or None, field it names or None) for one corpus entry."""
    good = COMMANDS[command][0]
    field = REQUIRED[command]
    path = tmp / f"{command}-{failure}.{fmt}"
    rows = [dict(good), dict(good), dict(good)]
    if failure == "missing":
        del rows[1][field]
        if fmt == "csv":  # a CSV column is absent from the header, so every row lacks it
            rows = [{"note": "n", **{k: v for k, v in r.items() if k != field}} for r in rows]
            return _write(path, fmt, rows), 2, field
        line = {"jsonl": 2, "json": 2, "parquet": 2}[fmt]
        return _write(path, fmt, rows), line, field
    if failure == "wrong_type":
        rows[1][field] = 42
        if fmt == "parquet":  # one column, one type: make the whole column ints
            rows = [{**r, field: i} for i, r in enumerate(rows)]
            return _write(path, fmt, rows), 1, field
        return _write(path, fmt, rows), 2, field
    if failure == "malformed":
        if fmt == "jsonl":
            path.write_text(json.dumps(good) + "\n" + '{"' + field + '": "cut\n', encoding="utf-8")
            return path, 2, None
        if fmt == "json":
            path.write_text("[\n" + json.dumps(good) + ",\n{oops}\n]", encoding="utf-8")
            return path, 3, None
        if fmt == "csv":  # a row with more fields than the header (a None key in DictReader)
            cols = list(good)
            path.write_text(",".join(cols) + "\n" + ",".join(["x"] * len(cols)) + "\n"
                            + ",".join(["y"] * (len(cols) + 1)) + "\n", encoding="utf-8")
            return path, 3, None
        path.write_bytes(b"PAR1 this is not parquet")
        return path, None, None
    if failure == "empty":
        if fmt == "parquet":
            pq.write_table(pa.table({field: pa.array([], pa.string())}), path)
        elif fmt == "csv":
            path.write_text(field + "\n", encoding="utf-8")
        elif fmt == "json":
            path.write_text("[]", encoding="utf-8")
        else:
            path.write_text("", encoding="utf-8")
        return path, None, None
    if failure == "not_utf8":
        text = _write(path, fmt, rows).read_bytes().replace(b"Add", b"A\xffd").replace(
            b"Say", b"S\xffy").replace(b"Write", b"Wr\xffte")
        path.write_bytes(text)
        return path, None, None
    if failure == "reserved_column":
        if fmt in ("csv", "parquet"):  # a column: every row has it
            rows = [{**r, "_synthcodec": "mine"} for r in rows]
            return _write(path, fmt, rows), 2 if fmt == "csv" else 1, "_synthcodec"
        rows[2]["_synthcodec"] = "mine"
        return _write(path, fmt, rows), 3, "_synthcodec"
    raise AssertionError(failure)


FAILURES = {
    "missing": ("jsonl", "json", "csv", "parquet"),
    "wrong_type": ("jsonl", "json", "parquet"),  # CSV has no types
    "malformed": ("jsonl", "json", "csv", "parquet"),
    "empty": ("jsonl", "json", "csv", "parquet"),
    "not_utf8": ("jsonl", "json", "csv"),
    "reserved_column": ("jsonl", "json", "csv", "parquet"),
}
CASES = [(c, f, fmt) for c in COMMANDS for f, fmts in FAILURES.items() for fmt in fmts]


@pytest.mark.parametrize(("command", "failure", "fmt"), CASES,
                         ids=[f"{c}-{f}-{fmt}" for c, f, fmt in CASES])
def test_bad_input_is_one_clear_line_and_nothing_is_written(
        tmp_path: Path, capsys: Any, command: str, failure: str, fmt: str) -> None:
    path, line, field = _bad_file(tmp_path, command, fmt, failure)
    run = tmp_path / "run"
    assert cli(*COMMANDS[command][1](str(path), str(run))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert str(path) in err
    if line is not None:
        assert f"{path}:{line}:" in err, err
    if field is not None:
        assert f"field '{field}'" in err, err
    assert "Traceback" not in err
    assert not run.exists()


def test_utf16_file_is_refused_with_a_hint(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "u16.jsonl"
    path.write_bytes('{"prompt": "hi"}\n'.encode("utf-16"))
    assert cli("complete", str(path), "-m", "fake:echo", "-o", str(tmp_path / "r"), "-q") == 2
    assert "re-encode the file as UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_byte_order_mark_is_accepted(tmp_path: Path, fmt: str, command: str) -> None:
    path = _write(tmp_path / f"bom.{fmt}", fmt, [COMMANDS[command][0]])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    run = tmp_path / "run"
    code = cli(*COMMANDS[command][1](str(path), str(run)))
    if command == "generate":  # the seed was read as written, with no BOM in its text
        assert code == 0
        encoded = read_jsonl(run / "encoded.jsonl")
        assert [row["instruction"] for row in encoded] == [COMMANDS[command][0]["instruction"]]
        return
    # The row was read with its first field's name intact (no BOM glued to it).
    good = COMMANDS[command][0]
    if command == "complete":
        assert code == 0
        (row,) = read_jsonl(run / "output.jsonl")
        assert (row["prompt"], row["response"]) == (good["prompt"], "echo: " + good["prompt"])
        return
    # rate: an echo judge gives no rating, so the row fails (exit code 1), whole
    assert code == 1
    assert read_jsonl(run / "output.jsonl") == []
    (row,) = read_jsonl(run / "failed.jsonl")
    assert {k: str(row[k]) for k in good} == {k: str(v) for k, v in good.items()}
    assert reason_of(row).startswith("no readable rating after 3 tries"), reason_of(row)


def test_parquet_timestamps_bytes_and_decimals_become_json(tmp_path: Path) -> None:
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({
        "prompt": [f"q{i}" for i in range(20)],
        "when": [dt.datetime(2024, 1, 1) + dt.timedelta(hours=i) for i in range(20)],
        "blob": [bytes([i, 255]) for i in range(20)],
        "text_bytes": [f"t{i}".encode() for i in range(20)],
        "price": [decimal.Decimal(f"{i}.50") for i in range(20)],
    }), path)
    run = tmp_path / "run"
    assert cli("complete", str(path), "-m", "fake:echo", "-o", str(run), "-q") == 0
    rows = read_jsonl(run / "output.jsonl")
    assert len(rows) == 20
    assert rows[1]["when"] == "2024-01-01T01:00:00"
    assert rows[1]["blob"].startswith("base64:") and rows[1]["text_bytes"] == "t1"
    assert rows[1]["price"] == "1.50"


def test_ragged_csv_stops_before_anything_is_written(tmp_path: Path, capsys: Any) -> None:
    lines = ["prompt,note"] + [f"q{i},n{i}" + (",extra" if i % 2 else "") for i in range(100)]
    path = tmp_path / "ragged100.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cli("complete", str(path), "-m", "fake:echo", "-o", str(tmp_path / "r"), "-q") == 2
    assert f"{path}:3:" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------- the invariant

def test_an_error_while_preparing_records_fails_the_run_loudly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(50)])
    real = driver.extract
    seen = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == 30:  # the run's 30th record (the scan pass validates with io.extract)
            raise TypeError("cannot convert this value")
        return real(*args, **kw)

    monkeypatch.setattr(driver, "extract", flaky)
    with pytest.raises(TypeError, match="cannot convert"):
        main(["complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "run"), "-q"])
    assert not (tmp_path / "run" / "output.jsonl").exists()
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_bug_in_a_step_fails_the_run_loudly(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(40)])
    from synthcodec.llm.fake import FakeBackend

    def reply(request: Any) -> str:
        if "q17" in request.messages[-1]["content"]:
            raise KeyError("a bug")
        return "ok"

    monkeypatch.setattr(session, "load_backend", lambda spec, **_: FakeBackend(reply))
    with pytest.raises(KeyError, match="a bug"):
        main(["complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "run"), "-q"])
    assert not (tmp_path / "run" / "output.jsonl").exists()


def test_records_unaccounted_for_are_never_published(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcodec.store import Journal

    real = Journal.record

    def lossy(self: Journal, record_id: str, idx: int, status: str, data: Any) -> None:
        if idx != 5:  # one record's result never reaches the journal
            real(self, record_id, idx, status, data)

    monkeypatch.setattr(Journal, "record", lossy)
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(10)])
    with pytest.raises(RuntimeError, match="1 of 10 records are unaccounted for"):
        main(["complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "run"), "-q"])
    assert not (tmp_path / "run" / "output.jsonl").exists()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"


# --------------------------------------------------------------------------- user columns

def test_user_columns_are_never_overwritten(tmp_path: Path, capsys: Any) -> None:
    rows = [{"id": "u-7", "prompt": "mine", "text": "ask this", "error": "user's"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    run = tmp_path / "run"
    assert cli("complete", str(src), "-m", "fake:echo", "--field", "prompt=text",
               "-o", str(run), "-q") == 0
    out = read_jsonl(run / "output.jsonl")[0]
    assert {k: out[k] for k in rows[0]} == rows[0]  # the user's prompt, id and error survive
    assert out["response"] == "echo: ask this"
    assert out["_synthcodec"]["index"] == 0 and out["_synthcodec"]["id"] != "u-7"

    same = tmp_path / "same"
    assert cli("complete", str(src), "-m", "fake:echo", "--field", "prompt=prompt",
               "-o", str(same), "-q") == 0
    assert read_jsonl(same / "output.jsonl")[0]["prompt"] == "mine"

    taken = write_jsonl(tmp_path / "taken.jsonl", [{"prompt": "a", "response": "old"}])
    assert cli("complete", str(taken), "-m", "fake:echo", "-o", str(tmp_path / "t"), "-q") == 2
    assert "--output-field" in capsys.readouterr().err


def test_failed_rows_keep_the_user_error_column_and_our_reason(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "q", "error": "theirs"}])
    with serve_in_subprocess() as (_, url):
        result = synthcodec("complete", str(src), "-m", f"bad-request@{url}", "-o",
                            str(tmp_path / "run"), "-q")
    assert result.returncode == 1  # every record failed
    failed = read_jsonl(tmp_path / "run" / "failed.jsonl")[0]
    assert failed["error"] == "theirs" and failed["id"] == 1
    assert "HTTP 400" in reason_of(failed) and failed["_synthcodec"]["index"] == 0


# -------------------------------------------------------------------------------- secrets

def test_spec_redaction_and_key_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = "m@http://user:sk-URLSECRET@127.0.0.1:8000/v1?api_key=sk-QUERY&x=1"
    shown = redact_spec(spec)
    assert "sk-URLSECRET" not in shown and "sk-QUERY" not in shown and "user" not in shown
    assert shown.startswith("m@http://***@127.0.0.1:8000/v1") and "x=***" in shown
    endpoint = parse_http(spec)
    assert "sk-" not in endpoint.identity and "user" not in endpoint.url

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert parse_http("m@http://127.0.0.1:9/v1").api_key() is None  # never to a named server
    assert parse_http("openai:gpt-4o-mini").api_key() == "sk-openai"
    assert parse_http("m@https://api.openai.com/v1").api_key() == "sk-openai"
    monkeypatch.setenv("MY_VLLM_KEY", "sk-vllm")
    assert parse_http("m@http://127.0.0.1:9/v1#key=MY_VLLM_KEY").api_key() == "sk-vllm"
    with pytest.raises(Exception, match=r"\$NOT_SET_ANYWHERE, which is not set"):
        check_spec("m@http://127.0.0.1:9/v1#key=NOT_SET_ANYWHERE")


def test_plain_http_key_to_another_host_warns(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SYNTHCODEC_API_KEY", "sk-x")
    OpenAIHTTPBackend.for_endpoint(parse_http("m@http://10.1.2.3:8000/v1"))
    assert [r.levelname for r in caplog.records if "plain HTTP" in r.getMessage()] == ["WARNING"]
    caplog.clear()
    OpenAIHTTPBackend.for_endpoint(parse_http("m@http://127.0.0.1:8000/v1"))
    assert "plain HTTP" not in caplog.text


def _scan(secret: str, *places: Path | str) -> None:
    for place in places:
        if isinstance(place, Path):
            files = [p for p in place.rglob("*") if p.is_file()] if place.is_dir() else [place]
            for f in files:
                assert secret.encode() not in f.read_bytes(), f
        else:
            assert secret not in place


def test_no_secret_reaches_any_file_or_stream(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    env_key, url_secret, openai_key = "sk-ENV-7777777", "sk-URL-8888888", "sk-OPENAI-9999999"
    cache = Path(os.environ["SYNTHCODEC_CACHE"])
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(3)])
    answers = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "question": "q", "answer": "x"}])
    other = write_jsonl(tmp_path / "b.jsonl", [{"id": 1, "question": "q", "answer": "y"}])
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    with serve_in_subprocess(require_api_key=env_key) as (_, url):
        host = url.removeprefix("http://")
        with_creds = f"m@http://user:{url_secret}@{host}"
        runs = []
        # 1. the key in the environment: works, and is nowhere afterwards
        monkeypatch.setenv("SYNTHCODEC_API_KEY", env_key)
        ok = synthcodec("complete", str(src), "-m", f"m@{url}", "-o", str(tmp_path / "ok"), "-q")
        assert ok.returncode == 0, ok.stderr
        runs.append((ok, tmp_path / "ok"))
        # 2. credentials in the URL (and the env key too): the URL's win, nothing leaks
        for cmd, out in (
            (["complete", str(src), "-m", with_creds], tmp_path / "c"),
            (["rate", str(write_jsonl(tmp_path / "r.jsonl", [{"instruction": "i", "output": "o"}])),
              "--judge", with_creds], tmp_path / "r"),
            (["compare", str(answers), str(other), "--judge", with_creds], tmp_path / "cmp"),
        ):
            result = synthcodec(*cmd, "-o", str(out), "-q")
            assert "Traceback" not in result.stderr, result.stderr
            runs.append((result, out))
        # 3. only the URL credentials (no env key): sent as Basic auth, refused, not shown
        monkeypatch.delenv("SYNTHCODEC_API_KEY")
        basic = synthcodec("complete", str(src), "-m", with_creds, "-o", str(tmp_path / "b"), "-q",
                           "--no-cache")
        assert basic.returncode == 3 and "HTTP 401" in basic.stderr, basic.stderr
        runs.append((basic, tmp_path / "b"))
        # 4. the OpenAI key is not sent to a server the user merely named
        named = synthcodec("complete", str(src), "-m", f"m@{url}", "-o", str(tmp_path / "n"), "-q",
                           "--no-cache")
        assert named.returncode == 3 and "HTTP 401" in named.stderr
        runs.append((named, tmp_path / "n"))
    for result, out in runs:
        for secret in (env_key, url_secret, openai_key):
            _scan(secret, out, cache, result.stdout, result.stderr)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["models"]["model"].startswith("m@http://***@")


# ---------------------------------------------------------------- the run dir is not poisoned

def test_a_typo_in_a_model_spec_touches_nothing(tmp_path: Path, capsys: Any) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(3)])
    run = tmp_path / "run"
    assert cli("complete", str(src), "-m", "nonsense", "-o", str(run), "-q") == 2
    assert not run.exists()
    assert cli("complete", str(src), "-m", "fake:echo", "-o", str(run), "-q") == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    # --overwrite with a typo must not empty the finished run
    assert cli("complete", str(src), "-m", "nonsnse", "--overwrite", "-o", str(run), "-q") == 2
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_run_that_did_nothing_does_not_block_the_corrected_command(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q"}])
    run = tmp_path / "run"
    wrong = synthcodec("complete", str(src), "-m", "m@http://127.0.0.1:9/v1", "-o", str(run), "-q")
    assert wrong.returncode == 3 and "cannot reach the model server" in wrong.stderr
    assert cli("complete", str(src), "-m", "fake:echo", "-o", str(run), "-q") == 0


@pytest.mark.parametrize("make_cache", ["text_file", "directory", "under_a_file"])
def test_a_bad_cache_is_one_line_before_anything_is_written(
        tmp_path: Path, capsys: Any, make_cache: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q"}])
    cache = tmp_path / "cache.sqlite"
    if make_cache == "text_file":
        cache.write_text("not a database\n" * 100)
    elif make_cache == "directory":
        cache.mkdir()
    else:
        (tmp_path / "f").write_text("x")
        cache = tmp_path / "f" / "cache.sqlite"
    run = tmp_path / "run"
    assert cli("complete", str(src), "-m", "fake:echo", "--cache", str(cache), "-o", str(run),
               "-q") == 2
    err = capsys.readouterr().err
    assert "cannot use the request cache" in err or "'--cache'" in err, err
    assert not run.exists()


def test_an_unwritable_output_path_is_one_line(tmp_path: Path, capsys: Any) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q"}])
    (tmp_path / "file").write_text("x")
    assert cli("complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "file" / "run"),
               "-q") == 2
    assert "is a file" in capsys.readouterr().err


def test_generate_checks_its_seeds_before_writing(tmp_path: Path, capsys: Any) -> None:
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "ok"}, {"text": "no"}])
    run = tmp_path / "run"
    assert cli("generate", str(seeds), "--strong", "fake:echo", "--target", "fake:echo",
               "-o", str(run), "-q") == 2
    assert f"{seeds}:2: field 'instruction'" in capsys.readouterr().err
    assert not run.exists()


# ------------------------------------------------------------------------------ exit codes

def test_a_wrong_port_stops_early_with_one_line(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(80)])
    result = synthcodec("complete", str(src), "-m", "m@http://127.0.0.1:9/v1",
                        "-o", str(tmp_path / "run"), "-q", timeout=60)
    assert result.returncode == 3
    assert "cannot reach the model server" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_truncated_free_text_is_kept_and_marked_by_default(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(8)])
    with serve_in_subprocess(truncate_every=2) as (_, url):
        kept = synthcodec("complete", str(src), "-m", f"m@{url}", "-o", str(tmp_path / "k"),
                          "-q", "-j", "1")
        strict = synthcodec("complete", str(src), "-m", f"m@{url}", "-o", str(tmp_path / "s"),
                            "-q", "-j", "1", "--fail-truncated")
    assert kept.returncode == 0
    rows = read_jsonl(tmp_path / "k" / "output.jsonl")
    assert len(rows) == 8 and sum(r["truncated"] for r in rows) == 4
    assert strict.returncode == 0 and "re-run repeats" in strict.stderr
    failed = read_jsonl(tmp_path / "s" / "failed.jsonl")
    assert len(failed) == 4 and all(f["_synthcodec"]["repeats"] for f in failed)


# ---------------------------------------------------------------------------- small things

def test_unknown_field_mapping_is_refused_everywhere(tmp_path: Path, capsys: Any) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "text": "t"}])
    assert cli("complete", str(src), "-m", "fake:echo", "--field", "foo=text",
               "-o", str(tmp_path / "r"), "-q") == 2
    assert "--field foo=text: unknown field" in capsys.readouterr().err
    assert cli("generate", str(src), "--strong", "fake:echo", "--target", "fake:echo",
               "--field", "foo=text", "-o", str(tmp_path / "g"), "-q") == 2
    assert not (tmp_path / "r").exists() and not (tmp_path / "g").exists()


def test_fake_json_is_one_line_and_fake_echo_is_in_help(tmp_path: Path, capsys: Any) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q"}])
    assert cli("complete", str(src), "-m", "fake:json", "-o", str(tmp_path / "r")) == 2
    assert "unknown fake model" in capsys.readouterr().err
    assert cli("complete", "--help") == 0
    assert "fake:echo" in capsys.readouterr().out


def test_published_files_follow_the_umask(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # store reads the umask once, at import: stand in a group-only one (not the usual 022).
    import synthcodec.store as store

    monkeypatch.setattr(store, "_UMASK", 0o027)
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q"}])
    assert cli("complete", str(src), "-m", "fake:echo", "-o", str(tmp_path / "r"), "-q") == 0
    for name in ("output.jsonl", "failed.jsonl", "manifest.json", "config.json"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o640, name


def test_rate_and_compare_spell_the_judge_option_alike(tmp_path: Path, capsys: Any) -> None:
    for command in ("rate", "compare"):
        assert cli(command, "--help") == 0
        assert "-m, --judge" in capsys.readouterr().out
