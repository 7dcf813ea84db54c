"""The request cache's fast paths (issue 19). The key, written directly for plain chat
requests (cache._chat_key_json), must stay the sha256 of exactly what json.dumps writes, or
every cache made before would miss; `lookup` reads a turn's keys in one SELECT and must
answer each caller as `get` would."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from synthcodec.cache import _chat_key_json, request_key
from synthcodec.llm.base import ContinuationRequest, EmbeddingRequest, Request


def dumps_key(identity: str, request: Any) -> str:
    """The key as json.dumps writes it (what request_key always computed)."""
    blob = json.dumps({"model": identity, **request.canonical()}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def test_keys_of_caches_made_before_are_unchanged() -> None:
    """Computed by the code before this change (a8a0cb0): a cache file made then still hits."""
    plain = Request.chat("Question 1: what is 1 + 1?", system="Be brief.", max_tokens=64)
    assert request_key("mock-model@http://127.0.0.1:8000/v1", plain) == (
        "e824ff649a02cb0bb4ef2df314cc9ca91efe4e815dc4cbcafa96c9e903809693")
    every_field = Request.chat(
        'Say "héllo"\n\t✓', temperature=0.7, sample=2, stop=("\n\n",), top_p=0.9,
        json_schema={"type": "object", "properties": {"b": {"type": "integer"},
                                                      "a": {"type": "string"}}},
        top_logprobs=5)
    assert request_key("openai:gpt-4o-mini", every_field) == (
        "a401200073e1655df7847b5e9d223a5f63e4d1f394d89b061ee2d6a49e7e1abe")


TEXTS = ["", "plain", 'quote " and \\ backslash', "tab\tnew\nline\r\x00\x1f\x7f",
         "ünïcödé ✓ 中文 🙂", "</think> <|channel|>", "\u2028\u2029", "a" * 300]


def random_request(rng: random.Random) -> Request:
    messages: list[dict[str, str]] = []
    for _ in range(rng.randint(1, 4)):
        message = {"role": rng.choice(["system", "user", "assistant"]),
                   "content": rng.choice(TEXTS) + rng.choice(TEXTS)}
        if rng.random() < 0.2:
            message["name"] = rng.choice(TEXTS)
        messages.append(message)
    return Request(
        messages=tuple(messages),
        temperature=rng.choice([0.0, 0, 0.7, 1, 1e-7, 2.5e10, 0.1 + 0.2]),
        max_tokens=rng.choice([1, 64, 512, 10**12]),
        top_p=rng.choice([None, 0.9, 1, 0.333333333333]),
        stop=rng.choice([None, (), ("\n",), ("</s>", '"', "✓")]),
        json_schema=rng.choice([None, {"type": "object"},
                                {"z": [1, 2.5, None, True], "a": {"é": "x", "b": "\n"}}]),
        sample=rng.choice([0, 3, -1]),
        top_logprobs=rng.choice([None, 0, 5, 20]),
    )


def test_written_key_is_json_dumps_byte_for_byte() -> None:
    rng = random.Random(19)
    for _ in range(2000):
        request = random_request(rng)
        identity = rng.choice(["m", "vllm:Qwen@http://h:8000/v1", 'odd "name" ✓'])
        written = _chat_key_json(identity, request)
        assert written is not None, request  # plain chat requests take the fast path
        assert written == json.dumps({"model": identity, **request.canonical()},
                                     sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert request_key(identity, request) == dumps_key(identity, request)


@pytest.mark.parametrize("request_", [
    Request.chat("x", temperature=float("nan")),  # json writes NaN: left to json.dumps
    Request.chat("x", temperature=True),  # a bool is no number here
    Request(messages=({"role": "user", "content": 3},)),  # type: ignore[dict-item]
    Request.chat("x", stop=(1,)),  # type: ignore[arg-type]
    ContinuationRequest(messages=({"role": "user", "content": "q"},), continuation="a"),
    EmbeddingRequest(text="t"),
])
def test_anything_else_goes_to_json_dumps_with_the_same_key(request_: Any) -> None:
    assert _chat_key_json("m", request_) is None
    assert request_key("m", request_) == dumps_key("m", request_)


def test_lookups_of_one_turn_share_a_select_and_each_gets_its_own_completion(
        tmp_path: Any) -> None:
    import asyncio

    from synthcodec.cache import RequestCache
    from synthcodec.llm.base import Completion

    cache = RequestCache(tmp_path / "cache.sqlite")
    cache.put("stored", Completion(text="kept", prompt_tokens=3, completion_tokens=4))
    cache.flush()
    cache.put("pending", Completion(text="not yet written"))
    statements: list[str] = []
    cache._db.set_trace_callback(statements.append)

    async def main() -> list[Any]:
        return await asyncio.gather(cache.lookup("stored"), cache.lookup("missing"),
                                    cache.lookup("stored"), cache.lookup("pending"))

    stored, missing, again, pending = asyncio.run(main())
    assert [s for s in statements if s.startswith("SELECT")] == [
        ("SELECT key, text, finish_reason, prompt_tokens, completion_tokens, token_logprobs "
         "FROM completions WHERE key IN ('stored','missing')")]
    assert missing is None and pending.text == "not yet written" and pending.cached
    assert (stored.text, stored.prompt_tokens, stored.completion_tokens) == ("kept", 3, 4)
    assert stored is not again and stored == again
    # a caller cancelled while it waits leaves the others their answer; a new loop works too
    async def cancelled() -> Any:
        first = asyncio.ensure_future(cache.lookup("stored"))
        second = asyncio.ensure_future(cache.lookup("stored"))
        await asyncio.sleep(0)
        first.cancel()
        return await second

    assert asyncio.run(cancelled()).text == "kept"
    assert asyncio.run(main())[0].text == "kept"
    cache.close()
