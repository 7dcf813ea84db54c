"""Issue 18 §5: servers that answer in their own way.

A server that takes no `response_format` (a 400 naming it) gets the schema in the prompt
instead, once, with a warning, and replies are validated here; an HTTP 200 whose body is
`{"error": {...}}` keeps the server's message.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from synthcodec.llm.base import PermanentError, Request, TransientError
from synthcodec.llm.openai_http import SCHEMA_IN_PROMPT, OpenAIHTTPBackend
from tests.helpers import read_jsonl, synthcodec, write_jsonl


def test_rate_json_against_a_server_without_response_format(tmp_path: Path) -> None:
    """Every --json row used to fail with HTTP 400."""
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", [{"instruction": f"say {i}", "output": f"{i}"}
                                              for i in range(6)])
    with serve_in_subprocess(reject_response_format=True) as (_, url):
        result = synthcodec("rate", str(src), "--judge", f"m@{url}", "--json", "-j", "3",
                            "-o", str(tmp_path / "run"), "--no-cache")
        stats = json.loads(__import__("urllib.request").request.urlopen(
            url.removesuffix("/v1") + "/stats").read())
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(tmp_path / "run" / "output.jsonl")
    assert len(rows) == 6 and all("score" in row for row in rows)
    assert result.stderr.count("rejects response_format") == 1  # said once
    assert "JSON schema in the prompt" in result.stderr
    # Two steps (json_schema, json_object) per request rejected at most before the switch.
    assert stats["faults"]["response_format"] <= 2 * 3


def test_plain_requests_never_get_the_schema_in_the_prompt() -> None:
    from tests.mock_server import MockServer

    async def main() -> None:
        async with MockServer(reject_response_format=True) as server:
            backend = OpenAIHTTPBackend("m", server.base_url)
            try:
                done = await backend.complete(Request.chat("hello"))
                schema = {"type": "object", "properties": {"n": {"type": "integer"}},
                          "required": ["n"]}
                shaped = await backend.complete(Request.chat("count", json_schema=schema))
                after = await backend.complete(Request.chat("hello again"))
            finally:
                await backend.aclose()
        assert done.text == "echo: hello"
        assert json.loads(shaped.text) == {"n": 0}
        assert backend._schema_style == SCHEMA_IN_PROMPT  # the switch did happen
        assert after.text == "echo: hello again"  # and a plain request after it is untouched

    asyncio.run(main())


def _backend() -> OpenAIHTTPBackend:
    return OpenAIHTTPBackend("m", "http://127.0.0.1:1/v1")


def test_an_error_object_in_a_200_reply_keeps_the_servers_message() -> None:
    body = json.dumps({"error": {"message": "upstream model overloaded", "code": 503}}).encode()
    with pytest.raises(TransientError, match="upstream model overloaded") as info:
        _backend().read_reply(body)
    assert "KeyError" not in str(info.value)
    refused = json.dumps({"error": {"message": "prompt too long", "code": 400}}).encode()
    with pytest.raises(PermanentError, match="prompt too long"):
        _backend().read_reply(refused)
    with pytest.raises(TransientError, match="malformed response body"):
        _backend().read_reply(b'{"choices": []}')


def test_a_200_error_reply_reaches_failed_jsonl_with_its_message(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q"}])

    from tests.mock_server import serve_in_subprocess

    with serve_in_subprocess(error_in_200=True) as (_, url):
        result = synthcodec("complete", str(src), "-m", f"m@{url}", "-o", str(tmp_path / "r"),
                            "--no-cache", "--max-attempts", "2")
    assert result.returncode == 1 and "KeyError" not in result.stderr, result.stderr
    failed = read_jsonl(tmp_path / "r" / "failed.jsonl")
    assert "the backend is down for maintenance" in failed[0]["_synthcodec"]["reason"]
