"""Fault tests against a local misbehaving OpenAI-compatible server (127.0.0.1 only).

The CLI runs as a user would run it; the mock server is started by each test and stopped.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from synthcodec.records import reason_of
from synthcodec.store import read_journal
from tests.helpers import popen_synthcodec, read_jsonl, synthcodec, write_jsonl
from tests.mock_server import serve_in_subprocess


def _stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as resp:
        return json.loads(resp.read())


def _input(tmp_path: Path, n: int) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"} for i in range(n)])


def _complete(src: Path, url: str, out: Path, *extra: str, timeout: float = 120):
    return synthcodec("complete", str(src), "-m", f"mock-model@{url}", "-o", str(out), "-q",
                      *extra, timeout=timeout)


@pytest.mark.parametrize(
    "fault, extra",
    [
        ({"rate_limit_rps": 40}, []),  # 429 + Retry-After under load
        ({"fail_first": 12, "fail_status": 503}, []),  # a 503 burst
        ({"fail_every": 3, "fail_status": 500}, []),
        ({"malformed_every": 4}, []),  # 200 with a broken body
        ({"hang_every": 9, "hang_seconds": 60}, ["--timeout", "0.5"]),  # timeouts
    ],
)
def test_transient_faults_lose_nothing(tmp_path: Path, fault: dict[str, Any], extra: list[str]) -> None:
    src = _input(tmp_path, 60)
    with serve_in_subprocess(latency=0.01, **fault) as (_, url):
        result = _complete(src, url, tmp_path / "run", "-j", "16", *extra)
        stats = _stats(url)
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(tmp_path / "run" / "output.jsonl")
    # Each row carries the server's real answer to its own prompt, never a faulty reply.
    assert [(r["id"], r["response"]) for r in rows] == [(i, f"echo: question {i}")
                                                        for i in range(60)]
    assert read_jsonl(tmp_path / "run" / "failed.jsonl") == []
    # Faults happened, and every extra request is the retry of one: one good answer a row.
    assert sum(stats["faults"].values()) > 0
    assert stats["total_requests"] == 60 + sum(stats["faults"].values())


def test_rate_limit_backs_off_instead_of_hammering(tmp_path: Path) -> None:
    src = _input(tmp_path, 80)
    with serve_in_subprocess(latency=0.0, rate_limit_rps=50) as (_, url):
        result = _complete(src, url, tmp_path / "run", "-j", "64")
        stats = _stats(url)
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["response"]) for r in read_jsonl(tmp_path / "run" / "output.jsonl")] == [
        (i, f"echo: question {i}") for i in range(80)]
    assert stats["total_requests"] == 80 + stats["by_status"].get("429", 0)
    # Honouring Retry-After and halving concurrency keeps the 429s a small multiple of N.
    assert stats["by_status"].get("429", 0) < 4 * 80


def test_4xx_is_not_retried_and_is_reported(tmp_path: Path) -> None:
    src = _input(tmp_path, 3)
    with serve_in_subprocess() as (_, url):
        result = synthcodec("complete", str(src), "-m", f"bad-request@{url}", "-o",
                            str(tmp_path / "run"), "-q")
        stats = _stats(url)
    assert result.returncode == 1, result.stderr  # every record failed
    failed = read_jsonl(tmp_path / "run" / "failed.jsonl")
    assert len(failed) == 3 and all("HTTP 400" in reason_of(f) for f in failed)
    assert stats["total_requests"] == 3


def test_truncated_output_is_a_failure_not_a_result(tmp_path: Path) -> None:
    src = _input(tmp_path, 8)
    with serve_in_subprocess(truncate_every=2) as (_, url):
        _complete(src, url, tmp_path / "run", "-j", "1", "--fail-truncated")
    failed = read_jsonl(tmp_path / "run" / "failed.jsonl")
    assert len(failed) == 4
    assert all("finish_reason=length" in reason_of(f) for f in failed)
    assert len(read_jsonl(tmp_path / "run" / "output.jsonl")) == 4


def test_a_run_dir_has_one_owner(tmp_path: Path) -> None:
    src = _input(tmp_path, 100)
    run = tmp_path / "run"
    with serve_in_subprocess(latency=0.5) as (_, url):  # the first run takes >= 25 s
        first = popen_synthcodec("complete", str(src), "-m", f"mock-model@{url}", "-o", str(run),
                                 "-j", "2")
        _wait_for_answers(url, 4)
        second = _complete(src, url, run)
        first.kill()
        first.communicate()
    assert second.returncode == 2
    assert "another synthcodec process is working in" in second.stderr


def test_a_live_run_can_be_read_by_another_process(tmp_path: Path) -> None:
    src = _input(tmp_path, 60)
    run = tmp_path / "run"
    with serve_in_subprocess(latency=0.2) as (_, url):  # the run takes >= 6 s at -j 2
        writer = popen_synthcodec("complete", str(src), "-m", f"mock-model@{url}", "-o",
                                  str(run), "-j", "2", "-q")
        try:
            _wait_for_answers(url, 6)
            deadline = time.monotonic() + 30
            seen: list[int] = []
            while len(seen) < 3:  # the journal grows under our eyes, read-only
                rows = read_journal(run, "complete", "ok")
                if not seen or len(rows) > seen[-1]:
                    seen.append(len(rows))
                assert time.monotonic() < deadline, seen
                time.sleep(0.2)
            assert json.loads((run / "config.json").read_text())["stage"] == "complete"
            assert all(out[0]["_synthcodec"]["id"] for out in rows)  # each: the outputs of a record
        finally:
            out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err  # reading never got in the writer's way
    assert len(read_journal(run, "complete", "ok")) == 60


def test_api_key_never_leaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-SECRET-1234567890"
    src = _input(tmp_path, 4)
    with serve_in_subprocess(require_api_key=secret) as (_, url):
        monkeypatch.setenv("SYNTHCODEC_API_KEY", "sk-wrong-key-0987654321")
        wrong = synthcodec("complete", str(src), "-m", f"m@{url}", "-o", str(tmp_path / "bad"))
        monkeypatch.setenv("SYNTHCODEC_API_KEY", secret)
        right = _complete(src, url, tmp_path / "run")
    assert wrong.returncode == 3 and "HTTP 401" in wrong.stderr
    assert "sk-wrong-key" not in wrong.stderr and "Traceback" not in wrong.stderr
    assert right.returncode == 0
    cache = Path(__import__("os").environ["SYNTHCODEC_CACHE"])
    for path in [*(tmp_path / "run").iterdir(), cache]:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in right.stderr


def _journal_rows(run: Path) -> int:
    db = run / "journal.sqlite"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM stage_complete").fetchone()[0]
    finally:
        conn.close()  # an open reader would keep the next run from taking the run dir


def _wait_for_answers(url: str, at_least: int, timeout: float = 60) -> None:
    """Progress as the server sees it (answers sent, whether or not journaled yet)."""
    deadline = time.monotonic() + timeout
    while _stats(url)["completed"] < at_least:
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_exactly(tmp_path: Path, sig: signal.Signals) -> None:
    n, jobs = 200, 4
    src = _input(tmp_path, n)
    run = tmp_path / "run"
    with serve_in_subprocess(latency=0.05) as (_, url):
        proc = popen_synthcodec("complete", str(src), "-m", f"mock-model@{url}", "-o", str(run),
                                "-j", str(jobs))
        _wait_for_answers(url, 40)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        done_before = _journal_rows(run)
        if sig == signal.SIGINT:
            assert proc.returncode == 130, err
            assert "re-run the same command to resume" in err.lower()
            assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
        else:
            assert proc.returncode == -signal.SIGKILL
        assert done_before < n
        sent_before = _stats(url)["total_requests"]
        result = _complete(src, url, run, "-j", str(jobs))
        sent_after = _stats(url)["total_requests"]
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(run / "output.jsonl")
    assert [r["id"] for r in rows] == list(range(n))  # none lost, none twice, input order
    # The resume only re-sends what was not journaled: at most the in-flight requests again.
    assert sent_after - sent_before <= n - done_before + jobs
    assert sent_after <= n + jobs


def test_allow_truncated_keeps_cut_answers_marked(tmp_path: Path) -> None:
    src = _input(tmp_path, 4)
    with serve_in_subprocess(truncate_every=2) as (_, url):
        result = _complete(src, url, tmp_path / "run", "-j", "1", "--allow-truncated")
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(tmp_path / "run" / "output.jsonl")
    assert [r["truncated"] for r in rows] == [False, True, False, True]


# ---- W3 in small: a server rate limit the client is not told about ------------------------


def test_w3_rate_limit_is_learned_nothing_lost_few_extra_requests(tmp_path: Path) -> None:
    # 20 req/s, bucket 20, 429 + "Retry-After: 1" (whole seconds, no retry-after-ms), 50 ms
    # per admitted request, 5% of admitted attempts answer 500/503 (by prompt + attempt).
    n = 80
    src = _input(tmp_path, n)
    with serve_in_subprocess(latency=0.05, rate_limit_rps=20, rate_limit_burst=20,
                             retry_after_style="seconds", fail_hash_rate=0.05) as (_, url):
        result = _complete(src, url, tmp_path / "run", "-j", "32")
        stats = _stats(url)
    assert result.returncode == 0, result.stderr
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "run" / "output.jsonl")) == list(range(n))
    assert read_jsonl(tmp_path / "run" / "failed.jsonl") == []
    limited = stats["by_status"].get("429", 0)
    # The first burst of 32 meets a bucket of 20 (12 x 429); then the learned rate keeps the
    # 429s to a few. Halving requests in flight instead gave about one 429 per record.
    assert limited <= 12 + 6, stats
    assert stats["total_requests"] <= n + 12 + 6 + stats["faults"].get("fail_hash", 0), stats


def test_x_ratelimit_headers_pace_before_the_first_429(tmp_path: Path) -> None:
    n = 60
    src = _input(tmp_path, n)
    with serve_in_subprocess(latency=0.02, rate_limit_rps=20, rate_limit_burst=20,
                             ratelimit_headers=True) as (_, url):
        result = _complete(src, url, tmp_path / "run", "-j", "4")
        stats = _stats(url)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(tmp_path / "run" / "output.jsonl")) == n
    # "remaining" runs low after ~18 requests; from then on the client sends at the refill
    # rate the headers give, so the server rarely has to say 429.
    assert stats["by_status"].get("429", 0) <= 3, stats
