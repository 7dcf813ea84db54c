"""Issue 18 §5: each kind of failure a re-run repeats gets its own advice, not the one
"change the options (e.g. --max-tokens)" hint for all of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthcodec.failures import OTHER, advice, advice_lines, repeat_advice
from tests.helpers import synthcodec, write_jsonl


@pytest.mark.parametrize("reason, expected", [
    ("m@http://h/v1: HTTP 400: {\"error\": {\"message\": \"response_format is not supported\"}}",
     "does not take response_format"),
    ("m@https://x.openai.azure.com: HTTP 400: The response was filtered due to the prompt "
     "triggering Azure OpenAI's content management policy (code content_filter)",
     "content filter"),
    ("openai:gpt-4o: HTTP 400: Invalid prompt: your prompt was flagged as potentially "
     "violating our usage policy", "content filter"),
    ("m@http://h/v1: HTTP 400: This model's maximum context length is 8192 tokens, however "
     "you requested 9000 tokens (max_tokens too large)", "refused by the server as sent"),
    ("m@http://h/v1: the server answered an error (HTTP 200): prompt too long",
     "refused by the server as sent"),
    ("output truncated at max_tokens=64 (finish_reason=length)", "raise --max-tokens"),
    ("the reply is all reasoning: the thinking was cut at --max-tokens 64",
     "spent its tokens thinking"),
    ("the model returned an empty answer", "answered nothing"),
    ("the reply ended inside the model's reasoning (900 characters of it, no answer): the "
     "token limit cut it; raise --max-tokens (now 64)", "spent its tokens thinking"),
    ("no readable output after 3 tries: no number on the first line; last reply: 'hm'",
     "could not be read"),
    ("something else entirely", OTHER),
])
def test_each_kind_has_its_own_advice(reason: str, expected: str) -> None:
    assert expected in advice(reason)


def test_advice_is_grouped_and_counted() -> None:
    reasons = ["output truncated at max_tokens=8 (finish_reason=length)"] * 2 + [
        "m@h: HTTP 422: unknown parameter 'top_k'"]
    grouped = repeat_advice(reasons)
    assert list(grouped.values()) == [1, 2]  # in the order of the kinds: refusal first
    lines = advice_lines(grouped)
    assert lines[0].startswith("3 of them failed in a way a re-run repeats")
    assert [line.split(":", 2)[:2] for line in lines[1:]] == [
        ["  1", " refused by the server as sent"], ["  2", " cut off at the token limit"]]


def test_the_summary_gives_truncation_and_a_refusal_different_advice(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(4)])
    with serve_in_subprocess(truncate_every=2) as (_, url):
        cut = synthcodec("complete", str(src), "-m", f"m@{url}", "-o", str(tmp_path / "cut"),
                         "-q", "-j", "1", "--fail-truncated")
        refused = synthcodec("complete", str(src), "-m", f"bad-request@{url}",
                             "-o", str(tmp_path / "refused"), "-q")
    assert cut.returncode == 0, cut.stderr
    assert "2: cut off at the token limit: raise --max-tokens" in cut.stderr
    assert refused.returncode == 1, refused.stderr
    assert "4: refused by the server as sent" in refused.stderr
    assert "--max-tokens" not in refused.stderr  # the old hint for every kind
