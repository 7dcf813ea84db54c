"""`synthcodec score`: IFD against hand-computed values, target-aware IFD, length and random,
resume and cache, served models (vLLM's prompt_logprobs), and the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from synthcodec.llm import FakeBackend
from synthcodec.llm.base import ContinuationRequest
from synthcodec.llm.openai_http import reply_logprobs
from synthcodec.session import RunOptions
from synthcodec.stages.score import parse_signals, random_key, response_length, score_file
from tests.helpers import cli, read_jsonl
from tests.mock_server import MockServer

ROWS = [
    {"instruction": "Name three colors", "input": "", "output": "Red green blue are three colors"},
    {"instruction": "Translate", "input": "bonjour le monde", "output": "hello world"},
    {"instruction": "Say hi", "input": "", "output": "Hello there"},
]


def write_rows(tmp_path: Path, rows: list[dict[str, Any]] = ROWS) -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def opts(**kw: Any) -> RunOptions:
    return RunOptions(progress=False, no_cache=True, **kw)


def test_ifd_is_the_ratio_of_the_two_mean_losses(tmp_path: Path) -> None:
    # Scripted log-probabilities: with the instruction [-0.5, -1.5] (loss 1.0), alone
    # [-2, -2, ...] (loss 2.0): IFD 0.5.
    def logprobs(request: ContinuationRequest) -> list[float]:
        asked = request.messages[-1]["content"]
        n = len(request.continuation.split())
        return [-0.5, -1.5] * (n // 2) + [-1.0] * (n % 2) if asked else [-2.0] * n

    fake = FakeBackend(logprobs=logprobs)
    run = tmp_path / "run"
    summary = score_file(write_rows(tmp_path), run, signals="ifd", options=opts(),
                         backends={"scorer": fake})
    assert summary.kept == 3
    rows = read_jsonl(run / "output.jsonl")
    second = rows[1]  # "hello world": [-0.5, -1.5] vs [-2, -2]
    assert second["ifd"] == 0.5 and second["ifd_ge_1"] is False
    assert (second["ifd_conditioned_loss"], second["ifd_direct_loss"]) == (1.0, 2.0)
    first = rows[0]  # 6 words: [-0.5, -1.5] * 3 -> loss 1.0; alone 2.0
    assert first["ifd"] == 0.5
    # What the model was asked: the reply after the instruction (+ input), and after an
    # empty user turn, in the same chat layout.
    asked = [c for c in fake.calls if isinstance(c, ContinuationRequest)]
    assert len(asked) == 6
    assert [c.messages for c in asked if c.continuation == "hello world"] == [
        ({"role": "user", "content": "Translate\n\nbonjour le monde"},),
        ({"role": "user", "content": ""},)]
    assert "ifd" not in rows[0]["output"] and rows[0]["_synthcodec"]["index"] == 0


def test_default_fake_gives_hand_computable_ifd_and_flags(tmp_path: Path) -> None:
    # fake:echo scores a word -1 when the prompt has it, else -2.
    # Row 0: "Red green blue are three colors" after "Name three colors": three, colors seen
    # -> loss (4*2 + 2*1)/6 = 5/3; alone 2 -> IFD 5/6. Row 2: nothing seen -> IFD 1, flagged.
    run = tmp_path / "run"
    assert cli("score", str(write_rows(tmp_path)), "-o", str(run), "-m", "fake:echo",
               "--no-cache", "-q") == 0
    rows = read_jsonl(run / "output.jsonl")
    assert rows[0]["ifd"] == round(5 / 6, 6) and rows[0]["ifd_ge_1"] is False
    assert rows[2]["ifd"] == 1.0 and rows[2]["ifd_ge_1"] is True
    assert [r["length"] for r in rows] == [6, 2, 2]
    config = json.loads((run / "config.json").read_text())
    assert config["stage"] == "score" and config["models"] == {"scorer": "fake:echo"}


def test_target_aware_ifd_uses_the_target_model(tmp_path: Path) -> None:
    scorer = FakeBackend(name="small", logprobs=lambda r: [-1.0] * len(r.continuation.split()))
    target = FakeBackend(name="target", logprobs=lambda r: (
        [-3.0] if r.messages[-1]["content"] else [-4.0]) * len(r.continuation.split()))
    run = tmp_path / "run"
    score_file(write_rows(tmp_path), run, signals="ifd,target_ifd", model="fake:small",
               target="fake:target", options=opts(),
               backends={"scorer": scorer, "target": target})
    row = read_jsonl(run / "output.jsonl")[0]
    assert row["ifd"] == 1.0 and row["ifd_ge_1"] is True  # the scorer: no help
    assert row["target_ifd"] == 0.75 and row["target_ifd_ge_1"] is False  # 3 / 4
    assert row["target_ifd_direct_loss"] == 4.0
    assert len(target.calls) == len(scorer.calls) == 6
    config = json.loads((run / "config.json").read_text())
    assert config["models"] == {"scorer": "fake:small", "target": "fake:target"}


def test_target_ifd_needs_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert cli("score", str(write_rows(tmp_path)), "-o", str(run), "--signals",
               "target_ifd", "--no-cache", "-q") == 2
    assert "target_ifd signal needs --target MODEL" in capsys.readouterr().err
    assert not run.exists()
    with pytest.raises(Exception, match="unknown signal 'perplexity'"):
        parse_signals("ifd,perplexity")


def test_length_and_random_need_no_model(tmp_path: Path) -> None:
    assert response_length("Hello, world! It's 3pm.") == 9  # Hello , world ! It ' s 3pm .
    runs = []
    for seed, name in ((7, "a"), (7, "b"), (8, "c")):
        run = tmp_path / name
        score_file(write_rows(tmp_path), run, signals=("length", "random"), seed=seed,
                   options=opts())
        runs.append(read_jsonl(run / "output.jsonl"))
        config = json.loads((run / "config.json").read_text())
        assert config["models"] == {}  # no model opened
    assert [r["random"] for r in runs[0]] == [r["random"] for r in runs[1]]
    assert [r["random"] for r in runs[0]] != [r["random"] for r in runs[2]]
    assert all(0 <= r["random"] < 1 for r in runs[0])
    # Fixed by the content, not the position: the same row elsewhere has the same key.
    assert runs[0][1]["random"] == random_key(7, "Translate", "bonjour le monde", "hello world")


def test_empty_response_is_rejected_with_the_reason(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rows = [*ROWS, {"instruction": "Nothing", "input": "", "output": "  "}]
    summary = score_file(write_rows(tmp_path, rows), run, model="fake:echo", options=opts())
    assert (summary.kept, summary.rejected) == (3, 1)
    assert read_jsonl(run / "rejected.jsonl")[0]["_synthcodec"]["reason"] == \
        "empty response: there is nothing to score"


def test_resume_and_cache(tmp_path: Path) -> None:
    data = write_rows(tmp_path)
    cache = tmp_path / "cache.sqlite"
    fake = FakeBackend()
    first = score_file(data, tmp_path / "run", options=RunOptions(progress=False,
                                                                  cache_path=str(cache)),
                       backends={"scorer": fake})
    assert first.stats.requests == 6 and len(fake.calls) == 6
    again = score_file(data, tmp_path / "run", options=RunOptions(progress=False,
                                                                  cache_path=str(cache)),
                       backends={"scorer": fake})
    assert again.resumed == 3 and again.stats.requests == 0
    other = score_file(data, tmp_path / "other", options=RunOptions(progress=False,
                                                                    cache_path=str(cache)),
                       backends={"scorer": fake})
    assert other.stats.cache_hits == 6 and other.stats.requests == 0 and len(fake.calls) == 6
    assert read_jsonl(tmp_path / "run" / "output.jsonl") == \
        read_jsonl(tmp_path / "other" / "output.jsonl")


def test_a_model_without_logprobs_is_refused(tmp_path: Path) -> None:
    class TextOnly(FakeBackend):
        scores_continuations = False

    with pytest.raises(Exception, match="cannot give the log-probabilities"):
        score_file(write_rows(tmp_path), tmp_path / "run", options=opts(),
                   backends={"scorer": TextOnly()})


def test_served_model_with_prompt_logprobs(tmp_path: Path) -> None:
    """vLLM's dialect against the mock server: the reply is the final assistant message and
    its tokens are found at the end of the scored prompt."""
    async def main() -> list[dict[str, Any]]:
        async with MockServer() as server:
            spec = f"mock-model@{server.base_url}"
            await asyncio.to_thread(score_file, write_rows(tmp_path), tmp_path / "run",
                                    signals="ifd", model=spec, options=opts())
        return read_jsonl(tmp_path / "run" / "output.jsonl")

    rows = asyncio.run(main())
    # "hello world" after "Translate bonjour le monde": both words new -> loss 2; alone 2.
    assert rows[1]["ifd"] == 1.0
    # Row 0: "Red green blue are three colors" after "Name three colors": 4 new, 2 seen.
    assert rows[0]["ifd_conditioned_loss"] == round(10 / 6, 6) and rows[0]["ifd_direct_loss"] == 2


def test_reply_logprobs_alignment() -> None:
    tokens = [None, {"5": {"logprob": -0.1, "decoded_token": "user"}},
              {"7": {"logprob": -0.2, "decoded_token": "\n"}},
              {"9": {"logprob": -0.3, "decoded_token": "Hel"}},
              {"3": {"logprob": -0.4, "decoded_token": "lo!"}}]
    assert reply_logprobs(tokens, "Hello!") == [-0.3, -0.4]
    assert reply_logprobs(tokens, "Goodbye") is None  # not what the prompt ends with


def test_server_without_prompt_logprobs_fails_the_rows_with_the_reason(tmp_path: Path) -> None:
    from synthcodec.llm.openai_http import OpenAIHTTPBackend

    class PlainServer(OpenAIHTTPBackend):
        def continuation_body(self, request: ContinuationRequest) -> dict[str, Any]:
            body = super().continuation_body(request)
            body.pop("prompt_logprobs")  # as a server that ignores it would answer
            return body

    async def main() -> Any:
        async with MockServer() as server:
            backend = PlainServer("mock-model", server.base_url or "")
            return await asyncio.to_thread(score_file, write_rows(tmp_path), tmp_path / "run",
                                           signals="ifd", options=opts(),
                                           backends={"scorer": backend})

    summary = asyncio.run(main())
    assert summary.failed == 3
    reason = read_jsonl(tmp_path / "run" / "failed.jsonl")[0]["_synthcodec"]["reason"]
    assert "no prompt_logprobs" in reason and "vLLM" in reason


def test_measuring_requests_have_cache_keys_of_their_own_kind(tmp_path: Path) -> None:
    """A chat request, a continuation and an embedding of the same text share no cache entry,
    and each kind is found again under its own key."""
    from synthcodec.cache import RequestCache
    from synthcodec.llm.base import EmbeddingRequest, Request
    from synthcodec.llm.client import LLMClient
    from synthcodec.llm.fake import word_vector

    messages = ({"role": "user", "content": "Say hi"},)
    chat = Request(messages=messages)
    continuation = ContinuationRequest(messages, "Say hi")
    embedding = EmbeddingRequest("Say hi")

    async def ask(client: LLMClient) -> tuple[str, list[float], list[float]]:
        return ((await client.complete(chat)).text,
                await client.continuation_logprobs(continuation),
                await client.embedding(embedding))

    fake = FakeBackend(["hello"])
    cache = RequestCache(tmp_path / "cache.sqlite")
    first = LLMClient(fake, cache=cache)
    answers = asyncio.run(ask(first))
    assert first.stats.requests == 3 and first.stats.cache_hits == 0
    # The fake: both words are in the prompt (-1 each); a bag-of-words unit vector.
    assert answers == ("hello", [-1.0, -1.0], word_vector(embedding))
    again = LLMClient(fake, cache=cache)
    assert asyncio.run(ask(again)) == answers
    assert again.stats.requests == 0 and again.stats.cache_hits == 3
    cache.close()
