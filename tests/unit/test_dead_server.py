"""Issue 18 §5: an endpoint that answers 5xx to everything (a proxy in front of a dead
backend) stops the run like an unreachable server: exit 3 and one line, not every record
retried to the end and exit 1."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.helpers import synthcodec, write_jsonl


def test_a_server_that_answers_only_5xx_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(30)])
    with serve_in_subprocess(fail_first=10**9, fail_status=503) as (_, url):
        result = synthcodec("complete", str(src), "-m", f"m@{url}", "-j", "4",
                            "--max-attempts", "3", "--no-cache", "-q", "-o", str(tmp_path / "r"))
        sent = json.loads(urllib.request.urlopen(url.removesuffix("/v1") + "/stats").read())
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "answered none of this run's requests" in errors[0]
    assert "HTTP 503" in errors[0] and "Traceback" not in result.stderr
    # The records in flight when the third gave up (3 + 4 - 1, 3 attempts each), not 30 x 3.
    assert sent["total_requests"] <= (3 + 4 - 1) * 3, sent


def test_one_answer_keeps_the_run_going_whatever_fails_later(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(8)])
    # Every 2nd request fails: records fail only by bad luck, and the model does answer.
    with serve_in_subprocess(fail_every=2, fail_status=503) as (_, url):
        result = synthcodec("complete", str(src), "-m", f"m@{url}", "-j", "1",
                            "--max-attempts", "1", "--no-cache", "-q", "-o", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "4 records failed" in result.stderr
