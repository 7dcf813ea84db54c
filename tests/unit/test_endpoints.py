"""Several endpoints of one model (`NAME@URL1,URL2`): spec, routing, benching, counts, cache."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from synthcodec.cache import RequestCache, request_key
from synthcodec.errors import UserError
from synthcodec.llm import FakeBackend, Request, TransientError, load_backend
from synthcodec.llm import client as client_module
from synthcodec.llm.client import FatalModelError, LLMClient, RetryPolicy, Stats
from synthcodec.llm.pool import PoolBackend
from synthcodec.llm.spec import check_spec, parse_endpoints, parse_http, redact_spec
from synthcodec.progress import Counts, Progress
from tests.helpers import read_jsonl, synthcodec, write_jsonl
from tests.mock_server import MockServer, serve_in_subprocess

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---- spec ---------------------------------------------------------------------------------


def test_spec_names_several_endpoints_each_with_its_own_credentials_and_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_B", "bbb")
    spec = ("m@http://user:s3cret@10.0.0.1:8000/v1,"
            "https://gpu2.example/v1?api_key=qq9#key=KEY_B, http://localhost:8002/v1")
    a, b, c = parse_endpoints(spec)
    assert (a.url, a.basic_auth, a.key_env) == ("http://10.0.0.1:8000/v1", ("user", "s3cret"),
                                                ("SYNTHCODEC_API_KEY",))
    assert b.key_env == ("KEY_B",) and b.api_key() == "bbb"
    assert b.shown_url == "https://gpu2.example/v1?api_key=***"
    assert c.url == "http://localhost:8002/v1" and c.basic_auth is None
    shown = redact_spec(spec)
    assert "s3cret" not in shown and "qq9" not in shown and "user" not in shown
    assert shown == ("m@http://***@10.0.0.1:8000/v1,https://gpu2.example/v1?api_key=***"
                     "#key=KEY_B,http://localhost:8002/v1")
    check_spec(spec)


def test_openai_key_only_goes_to_openai_endpoint_of_a_pool() -> None:
    mine, theirs = parse_endpoints("gpt@http://127.0.0.1:9/v1,https://api.openai.com/v1")
    assert "OPENAI_API_KEY" not in mine.key_env
    assert theirs.key_env == ("SYNTHCODEC_API_KEY", "OPENAI_API_KEY")


def test_bad_pool_specs_are_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(UserError, match="twice"):
        check_spec("m@http://h:1/v1,http://h:1/v1")
    with pytest.raises(UserError, match="NOPE"):
        check_spec("m@http://h:1/v1,http://h:2/v1#key=NOPE")
    with pytest.raises(UserError, match="bad port"):
        check_spec("m@http://h:1/v1,http://h:x/v1")
    with pytest.raises(UserError, match="several endpoints"):
        parse_http("m@http://h:1/v1,http://h:2/v1")  # e.g. lm-eval takes one


def test_pool_identity_is_the_set_of_endpoints_without_secrets() -> None:
    ab = load_backend("m@http://u:pw@127.0.0.1:1/v1,http://127.0.0.1:2/v1")
    ba = load_backend("m@http://127.0.0.1:2/v1,http://u:pw@127.0.0.1:1/v1")
    assert isinstance(ab, PoolBackend) and len(ab.members) == 2
    assert ab.identity == ba.identity == "m@http://***@127.0.0.1:1/v1,http://127.0.0.1:2/v1"
    assert "pw" not in ab.identity
    request = Request.chat("hi")
    assert request_key(ab.identity, request) == request_key(ba.identity, request)
    single = load_backend("m@http://127.0.0.1:1/v1")
    assert not isinstance(single, PoolBackend)


# ---- routing, benching, counts ---------------------------------------------------------


def _pool(*members: FakeBackend) -> PoolBackend:
    for i, member in enumerate(members):
        member.identity = f"m@http://127.0.0.1:{9000 + i}/v1"
    return PoolBackend(members, "m@pool")


def test_cache_key_does_not_depend_on_the_endpoint_that_answered(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "c.sqlite")
    a, b = FakeBackend(["from a"]), FakeBackend(["from b"])
    first = LLMClient(_pool(a, b), cache=cache, retry=FAST)
    assert run(first.complete(Request.chat("q"))).text == "from a"
    # The same model with its endpoints the other way round: served from the cache.
    c, d = FakeBackend(["from d"]), FakeBackend(["from c"])
    second = LLMClient(_pool(d, c), cache=cache, retry=FAST)
    assert run(second.complete(Request.chat("q"))).text == "from a"
    assert c.calls == [] and d.calls == [] and second.stats.cache_hits == 1
    cache.close()


def test_an_endpoint_that_starts_failing_is_benched_and_nothing_is_lost() -> None:
    served = {"a": 0}

    def flaky(request: Request) -> str | TransientError:
        served["a"] += 1
        if served["a"] > 20:  # half way through, this server starts answering 503
            return TransientError("m@a: HTTP 503", status=503)
        return "a:" + request.messages[-1]["content"]

    a = FakeBackend(flaky, latency=0.002)
    b = FakeBackend(lambda r: "b:" + r.messages[-1]["content"], latency=0.002)
    stats = Stats()
    client = LLMClient(_pool(a, b), max_in_flight=4, retry=FAST, stats=stats)

    async def main() -> list[str]:
        return [c.text for c in await asyncio.gather(
            *(client.complete(Request.chat(f"q{i}")) for i in range(100)))]

    texts = run(main())
    assert sorted(t.split(":", 1)[1] for t in texts) == sorted(f"q{i}" for i in range(100))
    counts = stats.endpoint_counts()
    first, second = counts["m@http://127.0.0.1:9000/v1"], counts["m@http://127.0.0.1:9001/v1"]
    assert first["benched"] >= 1 and first["failures"] >= client_module.BENCH_AFTER
    assert second["failures"] == 0 and second["answered"] + first["answered"] == 100
    assert first["requests"] + second["requests"] == stats.requests
    assert stats.request_failures == 0 and "endpoints" in stats.manifest_fields()
    assert "endpoints" not in stats.as_dict()  # as_dict stays summable across invocations


def test_least_loaded_routing_sends_most_requests_to_the_fast_endpoint() -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with MockServer(latency=0.01) as fast, MockServer(latency=0.2) as slow:
            backend = load_backend(f"mock-model@{slow.base_url},{fast.base_url}")
            client = LLMClient(backend, max_in_flight=8, retry=FAST)
            await asyncio.gather(*(client.complete(Request.chat(f"q{i}")) for i in range(300)))
            await client.aclose()
            return fast.stats(), slow.stats()

    fast, slow = run(main())
    assert fast["completed"] + slow["completed"] == 300
    assert fast["completed"] > 4 * slow["completed"], (fast["completed"], slow["completed"])
    assert slow["completed"] > 0


def test_a_benched_endpoint_comes_back_one_request_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "BENCH_SECONDS", 0.05)
    limit_back: list[int] = []  # a's in-flight limit when the first request after its bench came

    async def a_reply(request: Request) -> str | TransientError:
        first = client.endpoints[0]
        benched = first.counts.benched > 0  # when the request arrives: it fails until then
        if benched and not limit_back:
            limit_back.append(first.limit.limit)
        await asyncio.sleep(0.001)
        return "a" if benched else TransientError("m@a: HTTP 502", status=502)

    a = FakeBackend(a_reply)
    b = FakeBackend(["b"], latency=0.02)
    client = LLMClient(_pool(a, b), max_in_flight=4, retry=FAST)

    async def main() -> None:
        await asyncio.gather(*(client.complete(Request.chat(f"q{i}")) for i in range(200)))

    run(main())
    first = client.endpoints[0]
    assert first.counts.benched >= 1 and first.counts.answered > 0  # it came back
    assert limit_back == [1]  # one request at a time
    assert first.limit.limit == first.limit.maximum  # and grew back to its full limit


def test_every_endpoint_unreachable_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "UNREACHABLE_SECONDS", 0.2)
    monkeypatch.setattr(client_module, "BENCH_SECONDS", 0.01)
    answered = {"n": 0}

    def dies(request: Request) -> str | TransientError:
        answered["n"] += 1
        if answered["n"] > 10:
            return TransientError("m@x: ClientConnectorError", connect=True)
        return "ok"

    client = LLMClient(_pool(FakeBackend(dies), FakeBackend(dies)), max_in_flight=2,
                       retry=RetryPolicy(max_attempts=10_000, base_delay=0.01, max_delay=0.02))

    async def main() -> None:
        await asyncio.gather(*(client.complete(Request.chat(f"q{i}")) for i in range(50)))

    with pytest.raises(FatalModelError, match="any model server"):
        run(main())


def test_progress_line_shows_requests_per_endpoint() -> None:
    stats = Stats()
    client = LLMClient(_pool(FakeBackend(["x"]), FakeBackend(["y"])), stats=stats)
    client.endpoints[1].counts.failures = 3
    client.endpoints[1].counts.benched_until = time.monotonic() + 60
    client.endpoints[0].counts.requests = 12
    line = Progress("complete", Counts(total=10), stats, enabled=False).line()
    assert "ep 127.0.0.1:9000 12, 127.0.0.1:9001 0 (3 failed, benched)" in line


# ---- end to end: the CLI against two mock servers -----------------------------------------


def _stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as resp:
        return json.loads(resp.read())


def test_cli_two_endpoints_one_killed_half_way_loses_nothing(tmp_path: Path) -> None:
    n = 300
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"}
                                              for i in range(n)])
    with serve_in_subprocess(latency=0.02) as (_, url_a), \
            serve_in_subprocess(latency=0.02) as (proc_b, url_b):
        def kill_b_half_way() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if _stats(url_b)["completed"] >= n // 4:
                        break
                except OSError:
                    return
                time.sleep(0.02)
            proc_b.kill()

        killer = threading.Thread(target=kill_b_half_way)
        killer.start()
        result = synthcodec("complete", str(src), "-m", f"mock-model@{url_a},{url_b}",
                            "-o", str(tmp_path / "run"), "-q", "-j", "8")
        killer.join()
        assert proc_b.poll() is not None, "the second server was never killed"
        served_a = _stats(url_a)["completed"]
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(tmp_path / "run" / "output.jsonl")
    assert sorted(r["id"] for r in rows) == list(range(n))
    assert read_jsonl(tmp_path / "run" / "failed.jsonl") == []
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    endpoints = manifest["endpoints"]
    a, b = endpoints[f"mock-model@{url_a}"], endpoints[f"mock-model@{url_b}"]
    assert b["benched"] >= 1 and b["failures"] >= 1 and b["answered"] >= n // 8
    assert a["answered"] == served_a and a["answered"] + b["answered"] == n
    assert a["requests"] + b["requests"] == manifest["this_invocation"]["requests"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_no_endpoint_reachable_exits_3(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(5)])
    spec = f"m@http://127.0.0.1:{_free_port()}/v1,http://127.0.0.1:{_free_port()}/v1"
    result = synthcodec("complete", str(src), "-m", spec, "-o", str(tmp_path / "run"), "-q",
                        timeout=60)
    assert result.returncode == 3, result.stderr
    assert "cannot reach any model server" in result.stderr


def test_mock_server_max_concurrency_caps_the_requests_served_at_once() -> None:
    async def main() -> float:
        async with MockServer(latency=0.1, max_concurrency=4) as server:
            client = LLMClient(load_backend(f"mock-model@{server.base_url}"), retry=FAST)
            started = time.monotonic()
            await asyncio.gather(*(client.complete(Request.chat(f"q{i}")) for i in range(16)))
            await client.aclose()
            return time.monotonic() - started

    assert run(main()) >= 0.38  # 16 requests, 4 at a time, 0.1 s each: four rounds
