"""Scores from token log-probabilities (G-Eval): reading them, asking for them, caching them."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path

import pytest

from synthcodec.cache import RequestCache, request_key
from synthcodec.errors import UserError
from synthcodec.judging.expected_score import expected_scores, score_spans
from synthcodec.judging.pairwise import JudgeSettings, judge_pair
from synthcodec.llm import Completion, FakeBackend, Request
from synthcodec.llm.base import TokenLogprob, chat_token_logprobs
from synthcodec.llm.client import LLMClient
from synthcodec.llm.fake import logprob_reply
from synthcodec.llm.openai_http import OpenAIHTTPBackend
from synthcodec.stages.rate import Rater, RateStage, rating_template
from tests.mock_server import MockServer, chat_logprobs


def rater(backend, json_mode: bool = False) -> Rater:  # type: ignore[no-untyped-def]
    return Rater(LLMClient(backend), rating_template(None), dimension="accuracy",
                 json_mode=json_mode, reasks=0, max_tokens=256, logprobs=True)


# --------------------------------------------------------------------------- reading

def test_spans_in_the_formats_the_prompts_ask_for() -> None:
    assert score_spans("4\nGood.", ("score",)) == [(0, 1)]
    assert score_spans("\n**Score: 3.5**\nok", ("score",)) == [(10, 11)]
    assert score_spans('{"score": 4.5, "explanation": "x"}', ("score",)) == [(10, 11)]
    assert score_spans("8 6\nBecause", ("score_1", "score_2")) == [(0, 1), (2, 3)]
    assert score_spans('{"score_1": 10, "score_2": 3,', ("score_1", "score_2")) == \
        [(12, 14), (27, 28)]
    assert score_spans("The answer deserves 4", ("score",)) is None


def test_weighted_mean_over_the_score_tokens() -> None:
    c = logprob_reply("4\nGood.", [{"4": 0.5, "3": 0.25, "5": 0.25, "x": 0.5}])
    assert expected_scores(c, [(0, 1)], 0, 5) == [pytest.approx(4.0)]
    c = logprob_reply("5\nGood.", [{"5": 0.5, "4": 0.5, "9": 0.1}])  # 9 is off the scale
    assert expected_scores(c, [(0, 1)], 0, 5) == [pytest.approx(4.5)]


def test_a_two_token_ten_is_split_by_the_next_digit() -> None:
    # "10" = "1" + "0": p(first "1") = 0.5, then "0" follows with 0.8 -> p(10) = 0.4, p(1) = 0.1
    c = logprob_reply("10 3\nok", [{"1": 0.5, "9": 0.5}, {"0": 0.8, " ": 0.2}, {"3": 1.0}])
    got = expected_scores(c, score_spans(c.text, ("a", "b")), 1, 10)
    assert got == [pytest.approx((0.4 * 10 + 0.1 * 1 + 0.5 * 9) / 1.0), pytest.approx(3)]


def test_a_token_with_a_leading_space_keeps_its_prefix() -> None:
    tokens = (TokenLogprob("{", 0.0, (("{", 0.0),)), TokenLogprob('"score":', 0.0),
              TokenLogprob(" 4", math.log(0.6), ((" 4", math.log(0.6)), (" 2", math.log(0.2)),
                                                 ("4", math.log(0.2)))),
              TokenLogprob("}", 0.0))
    c = Completion(text='{"score": 4}', token_logprobs=tokens)
    assert expected_scores(c, score_spans(c.text, ("score",)), 0, 5) == \
        [pytest.approx((0.6 * 4 + 0.2 * 2) / 0.8)]


def test_no_logprobs_or_a_mismatch_reads_nothing() -> None:
    assert expected_scores(Completion(text="4"), [(0, 1)], 0, 5) is None
    c = logprob_reply("4 is my score", [{"4": 1.0}])
    assert expected_scores(c, [(5, 7)], 0, 5) is None  # "is" is not a number


# --------------------------------------------------------------------------- asking

def test_rater_asks_for_logprobs_and_reads_the_weighted_score() -> None:
    backend = FakeBackend([logprob_reply("4\nGood.", [{"4": 0.5, "3": 0.5}])])
    result = asyncio.run(rater(backend).rate("Add 2 and 2.", "", "4"))
    assert (result.score, result.sampled, result.scores_from) == (3.5, 4, "logprobs")
    request = backend.calls[0]
    assert request.top_logprobs == 20 and request.max_tokens == 6
    # a reply without log-probabilities: the written score stands, and says so
    plain = FakeBackend([Completion(text="4\nGood.")])
    result = asyncio.run(rater(plain).rate("Add 2 and 2.", "", "4"))
    assert (result.score, result.scores_from) == (4, "text")


def test_rate_stage_columns_and_config() -> None:
    stage = RateStage(scores="logprobs")
    assert stage.adds == ("score", "explanation", "judge_text", "score_sampled", "score_from")
    assert stage.config()["scores"] == "logprobs"
    assert "scores" not in RateStage().config()  # runs made before the option still resume


def test_pairwise_judge_reads_both_weighted_scores() -> None:
    backend = FakeBackend([logprob_reply("8 2\nok", [{"8": 0.5, "6": 0.5}, {"2": 1.0}])])
    verdict = asyncio.run(judge_pair(LLMClient(backend), "Q?", "a", "b",
                                     JudgeSettings(json=False, scores="logprobs")))
    assert (verdict.score_1, verdict.score_2, verdict.scores_from) == (7, 2, "logprobs")
    assert backend.calls[0].max_tokens == 8 and backend.calls[0].top_logprobs == 20
    assert JudgeSettings(scores="logprobs").config()["judge_scores"] == "logprobs"
    assert "judge_scores" not in JudgeSettings().config()


def test_a_backend_without_logprobs_is_refused_up_front() -> None:
    backend = FakeBackend(["4"])
    backend.token_logprobs = False  # type: ignore[misc]
    with pytest.raises(UserError, match="returns no token log-probabilities"):
        JudgeSettings(scores="logprobs").for_backend(backend)
    with pytest.raises(UserError, match="--scores logprobs"):
        RateStage(scores="logprobs").rater({"judge": LLMClient(backend)})  # type: ignore[arg-type]


def test_openai_server_logprobs_end_to_end() -> None:
    """The mock server answers logprobs=true: a digit d at 0.6 beside d-1 and d+1 at 0.2."""
    async def main() -> tuple[float, float, float]:
        async with MockServer(responder=lambda body: "5\nGood." if "scale of 0 to 5" in str(
                body["messages"]) else "9 2\nok") as mock:
            backend = OpenAIHTTPBackend("m", mock.base_url)
            assert backend.body(Request.chat("x", top_logprobs=5))["top_logprobs"] == 5
            assert "logprobs" not in backend.body(Request.chat("x"))
            rated = await rater(backend).rate("Add 2 and 2.", "", "4")
            verdict = await judge_pair(LLMClient(backend), "Q?", "a", "b",
                                       JudgeSettings(json=False, scores="logprobs"))
            await backend.aclose()
            return rated.score, verdict.score_1, verdict.score_2

    score, s1, s2 = asyncio.run(main())
    assert score == pytest.approx((0.6 * 5 + 0.2 * 4) / 0.8)  # 6 is off the 0-5 scale
    assert s1 == pytest.approx((0.6 * 9 + 0.2 * 8) / 0.8)  # 10 is not one token here
    assert s2 == pytest.approx(2.0)


def test_chat_logprobs_shape_is_read() -> None:
    read = chat_token_logprobs(chat_logprobs("7 ok", 2))
    assert read is not None and [t.token for t in read] == ["7", " ", "ok"]
    assert read[0].top[0][0] == "7" and len(read[0].top) == 2
    assert chat_token_logprobs(None) is None and chat_token_logprobs({"content": 3}) is None


# --------------------------------------------------------------------------- caching

def test_the_request_key_of_a_request_without_logprobs_is_unchanged() -> None:
    plain = Request.chat("hi")
    assert "top_logprobs" not in plain.canonical()
    assert request_key("m", plain) != request_key("m", Request.chat("hi", top_logprobs=5))


def test_cache_keeps_logprobs_and_upgrades_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
               "finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, "
               "created REAL)")
    db.execute("INSERT INTO completions VALUES ('old', 'kept', 'stop', 1, 1, 0)")
    db.commit()
    db.close()
    cache = RequestCache(path)
    old = cache.get("old")
    assert old is not None and old.text == "kept" and old.token_logprobs is None
    reply = logprob_reply("4\nok", [{"4": 0.5, "3": 0.5}])
    cache.put("new", reply)
    cache.close()
    again = RequestCache(path).get("new")
    assert again is not None and again.token_logprobs == reply.token_logprobs


def test_a_reasoning_judge_is_read_at_its_answer_not_in_its_trace() -> None:
    """The tokens cover the raw reply, `text` the answer only: a trace that writes the same
    scores first must not be where they are read."""
    raw = "<think>A first guess: 8 2</think>\n8 2"
    digits = [{"8": 1.0}, {"2": 1.0}, {"8": 0.5, "6": 0.5}, {"2": 0.5, "4": 0.5}]
    backend = FakeBackend([logprob_reply(raw, digits)])
    verdict = asyncio.run(judge_pair(LLMClient(backend), "Q?", "a", "b",
                                     JudgeSettings(json=False, scores="logprobs")))
    assert verdict.reasoning == "A first guess: 8 2" and verdict.text == "8 2"
    assert (verdict.score_1, verdict.score_2, verdict.scores_from) == (7, 3, "logprobs")
