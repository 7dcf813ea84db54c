"""Tests for the mock OpenAI-compatible server (raw aiohttp client, plain asyncio.run)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import aiohttp
import pytest

from tests.mock_server import (
    MockServer,
    default_reply,
    schema_instance,
    serve_in_subprocess,
)

try:
    import jsonschema
except ImportError:  # pragma: no cover - manual checks below cover the basics
    jsonschema = None


def _chat_body(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "mock-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
        "temperature": 0.0,
        "max_tokens": 64,
    }
    body.update(extra)
    return body


async def _post(
    session: aiohttp.ClientSession, base_url: str, body: dict[str, Any], **kw: Any
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(f"{base_url}/chat/completions", json=body, **kw) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def _root(base_url: str) -> str:
    return base_url.rsplit("/v1", 1)[0]


def test_normal_reply_shape() -> None:
    async def run() -> None:
        async with MockServer() as server, aiohttp.ClientSession() as session:
            assert server.base_url is not None
            assert server.base_url.startswith("http://127.0.0.1:")
            assert server.base_url.endswith("/v1")
            status, headers, raw = await _post(session, server.base_url, _chat_body("x" * 300))
            assert status == 200
            data = json.loads(raw)
            assert data["object"] == "chat.completion"
            assert data["id"]
            assert data["model"] == "mock-model"
            choice = data["choices"][0]
            assert choice["message"]["role"] == "assistant"
            assert choice["message"]["content"] == "echo: " + "x" * 200
            assert choice["finish_reason"] == "stop"
            usage = data["usage"]
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
            assert usage["completion_tokens"] > 0

            async with session.get(f"{server.base_url}/models") as resp:
                models = await resp.json()
            assert [m["id"] for m in models["data"]] == ["mock-model"]

    asyncio.run(run())


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3},
        "age": {"type": "integer", "minimum": 18},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "color": {"enum": ["red", "green"]},
        "either": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "child": {"$ref": "#/$defs/Child"},
        "optional": {"type": "string"},
    },
    "required": ["name", "age", "score", "ok", "tags", "color", "either", "child"],
    "additionalProperties": False,
    "$defs": {
        "Child": {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "required": ["id"],
        }
    },
}


def _check_instance(value: Any) -> None:
    if jsonschema is not None:
        jsonschema.validate(value, SCHEMA)
    assert set(value) == set(SCHEMA["required"])
    assert isinstance(value["name"], str) and len(value["name"]) >= 3
    assert isinstance(value["age"], int) and value["age"] >= 18
    assert isinstance(value["ok"], bool)
    assert len(value["tags"]) == 2 and all(isinstance(t, str) for t in value["tags"])
    assert value["color"] == "red"
    assert value["either"] == 0
    assert value["child"] == {"id": 0}


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}},
        {"type": "json_object", "schema": SCHEMA},
    ],
)
def test_json_schema_reply_validates(response_format: dict[str, Any]) -> None:
    async def run() -> None:
        async with MockServer() as server, aiohttp.ClientSession() as session:
            assert server.base_url is not None
            body = _chat_body(response_format=response_format)
            status, _, raw = await _post(session, server.base_url, body)
            assert status == 200
            content = json.loads(raw)["choices"][0]["message"]["content"]
            _check_instance(json.loads(content))

    asyncio.run(run())


def test_schema_instance_edge_cases() -> None:
    assert schema_instance({"type": ["null", "string"]}) == ""
    assert schema_instance({"type": "integer", "exclusiveMinimum": 5}) == 6
    assert schema_instance({"const": 7}) == 7
    assert schema_instance({"type": "array"}) == []
    # A self-referencing schema must terminate.
    recursive = {"$ref": "#", "type": "object"}
    assert schema_instance(recursive) is None  # gives up on the cycle, never recurses forever
    assert default_reply({"messages": [{"role": "user", "content": "hi"}]}) == "echo: hi"


def test_rate_limit_returns_429_with_retry_after() -> None:
    async def run() -> None:
        async with MockServer(rate_limit_rps=2, rate_limit_burst=2) as server:
            assert server.base_url is not None
            async with aiohttp.ClientSession() as session:
                results = [await _post(session, server.base_url, _chat_body()) for _ in range(5)]
            statuses = [r[0] for r in results]
            assert statuses[:2] == [200, 200]
            assert statuses[2:] == [429, 429, 429]
            status, headers, raw = results[2]
            assert int(headers["Retry-After"]) >= 1
            assert 0 < int(headers["retry-after-ms"]) <= 1000
            error = json.loads(raw)["error"]
            assert error["code"] == "rate_limit_exceeded"
            assert error["message"]

    asyncio.run(run())


def test_fail_first_then_normal() -> None:
    async def run() -> None:
        async with MockServer(fail_first=2, fail_status=503) as server:
            assert server.base_url is not None
            async with aiohttp.ClientSession() as session:
                statuses = [
                    (await _post(session, server.base_url, _chat_body()))[0] for _ in range(4)
                ]
            assert statuses == [503, 503, 200, 200]

    asyncio.run(run())


def test_fail_every_and_auth() -> None:
    async def run() -> None:
        async with MockServer(fail_every=3, fail_status=500, require_api_key="k") as server:
            assert server.base_url is not None
            good = {"Authorization": "Bearer k"}
            async with aiohttp.ClientSession() as session:
                status, _, _ = await _post(session, server.base_url, _chat_body())
                assert status == 401  # request 1, no key
                statuses = [
                    (await _post(session, server.base_url, _chat_body(), headers=good))[0]
                    for _ in range(5)
                ]
            # Arrival numbers 2..6: the 3rd and 6th fail.
            assert statuses == [200, 500, 200, 200, 500]

    asyncio.run(run())


def test_truncate_every() -> None:
    async def run() -> None:
        async with MockServer(truncate_every=2) as server:
            assert server.base_url is not None
            async with aiohttp.ClientSession() as session:
                first = json.loads((await _post(session, server.base_url, _chat_body("abcdef")))[2])
                second = json.loads((await _post(session, server.base_url, _chat_body("abcdef")))[2])
            assert first["choices"][0]["finish_reason"] == "stop"
            assert first["choices"][0]["message"]["content"] == "echo: abcdef"
            assert second["choices"][0]["finish_reason"] == "length"
            assert second["choices"][0]["message"]["content"] == "echo: "

    asyncio.run(run())


def test_malformed_every() -> None:
    async def run() -> None:
        async with MockServer(malformed_every=1) as server:
            assert server.base_url is not None
            async with aiohttp.ClientSession() as session:
                status, headers, raw = await _post(session, server.base_url, _chat_body())
            assert status == 200
            assert headers["Content-Type"].startswith("application/json")
            with pytest.raises(ValueError):
                json.loads(raw)

    asyncio.run(run())


def test_bad_request_model_and_custom_status() -> None:
    async def run() -> None:
        async with MockServer(status_for_model={"bad-request": 400, "gone": 404}) as server:
            assert server.base_url is not None
            async with aiohttp.ClientSession() as session:
                status, _, raw = await _post(
                    session, server.base_url, _chat_body(model="bad-request")
                )
                assert status == 400
                assert json.loads(raw)["error"]["type"] == "invalid_request_error"
                status, _, _ = await _post(session, server.base_url, _chat_body(model="gone"))
                assert status == 404

    asyncio.run(run())


def test_hang_is_released_by_client_timeout_and_stop() -> None:
    async def run() -> None:
        server = MockServer(hang_every=1, hang_seconds=3600)
        base_url = await server.start()
        try:
            timeout = aiohttp.ClientTimeout(total=0.3)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                with pytest.raises(asyncio.TimeoutError):
                    await _post(session, base_url, _chat_body())
        finally:
            t0 = time.monotonic()
            await server.stop()
            assert time.monotonic() - t0 < 5

    asyncio.run(run())


def test_stats_counts_and_reset() -> None:
    async def run() -> None:
        async with MockServer(fail_first=1, latency=0.05) as server:
            assert server.base_url is not None
            root = _root(server.base_url)
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(
                    *(_post(session, server.base_url, _chat_body()) for _ in range(10))
                )
                async with session.get(f"{root}/stats") as resp:
                    stats = await resp.json()
                assert stats["total_requests"] == 10
                assert stats["completed"] == 10
                assert stats["in_flight"] == 0
                assert stats["by_status"] == {"200": 9, "503": 1}
                assert stats["faults"] == {"fail_first": 1}
                assert 2 <= stats["max_in_flight"] <= 10
                assert not any(isinstance(v, list) for v in stats.values())

                async with session.post(f"{root}/stats/reset") as resp:
                    assert resp.status == 200
                async with session.get(f"{root}/stats") as resp:
                    stats = await resp.json()
                assert stats["total_requests"] == 0
                assert stats["by_status"] == {}
                # The arrival counter is reset too, so fail_first applies again.
                status, _, _ = await _post(session, server.base_url, _chat_body())
                assert status == 503

    asyncio.run(run())


def test_responder_and_loopback_only() -> None:
    async def run() -> None:
        async def responder(body: dict[str, Any]) -> str:
            return f"scripted:{len(body['messages'])}"

        async with MockServer(responder=responder) as server, aiohttp.ClientSession() as s:
            assert server.base_url is not None
            _, _, raw = await _post(s, server.base_url, _chat_body())
            assert json.loads(raw)["choices"][0]["message"]["content"] == "scripted:2"

    asyncio.run(run())
    with pytest.raises(ValueError):
        MockServer(host="0.0.0.0")
    MockServer(host="::1")
    MockServer(host="localhost")


def test_subprocess_ready_protocol() -> None:
    with serve_in_subprocess(latency=0.01, fail_first=1, fail_status=429) as (proc, base_url):
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")

        async def run() -> list[int]:
            async with aiohttp.ClientSession() as session:
                return [
                    (await _post(session, base_url, _chat_body()))[0] for _ in range(2)
                ]

        assert asyncio.run(run()) == [429, 200]
        assert proc.poll() is None
        # SIGINT must also end it cleanly.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_w3_mode_whole_second_retry_after_and_x_ratelimit_headers() -> None:
    async def run() -> None:
        async with MockServer(rate_limit_rps=2, rate_limit_burst=2, retry_after_style="seconds",
                              ratelimit_headers=True) as server:
            assert server.base_url is not None
            async with aiohttp.ClientSession() as session:
                results = [await _post(session, server.base_url, _chat_body()) for _ in range(3)]
        assert [r[0] for r in results] == [200, 200, 429]
        ok, limited = results[0][1], results[2][1]
        assert ok["x-ratelimit-limit-requests"] == "2"
        assert ok["x-ratelimit-remaining-requests"] == "1"
        assert ok["x-ratelimit-reset-requests"].endswith("ms")
        assert limited["Retry-After"] == "1" and "retry-after-ms" not in limited
        assert limited["x-ratelimit-remaining-requests"] == "0"

    asyncio.run(run())


def test_per_prompt_faults_follow_the_prompt_hash() -> None:
    from tests.mock_server import INVALID_JSON_REPLY, hash_fraction

    prompts = [f'Item {i}: reply {{"score": {i % 5}}}' for i in range(40)]
    cut = [p for p in prompts if hash_fraction("truncate", p) < 0.2]
    invalid = [p for p in prompts if hash_fraction("invalid", p) < 0.3 and p not in cut]
    plain = [p for p in prompts if p not in cut and p not in invalid]
    assert cut and invalid and plain

    async def ask(session: aiohttp.ClientSession, url: str, prompt: str) -> tuple[str, str]:
        body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
        _, _, raw = await _post(session, url, body)
        choice = json.loads(raw)["choices"][0]
        return choice["message"]["content"], choice["finish_reason"]

    async def run() -> None:
        async with MockServer(reply_json_in_prompt=True, invalid_json_first_rate=0.3,
                              truncate_rate=0.2) as server, aiohttp.ClientSession() as session:
            url = server.base_url
            assert url is not None
            for p in plain:
                assert await ask(session, url, p) == (p[p.index("{"):], "stop")
            for p in invalid:  # invalid once, then the right answer
                assert await ask(session, url, p) == (INVALID_JSON_REPLY, "stop")
                assert await ask(session, url, p) == (p[p.index("{"):], "stop")
            for p in cut:  # cut every time
                for _ in range(2):
                    assert await ask(session, url, p) == ('{"score', "length")

    asyncio.run(run())
