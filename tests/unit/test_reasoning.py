"""Reasoning models: a trace in the reply is never read as the verdict nor kept as data.

Each test scripts a reasoning model in one of the forms servers send (llm/reasoning.py):
`<think>trace</think>answer`, R1's `trace</think>answer`, a `<think>` the token limit cut,
gpt-oss's harmony channels, and a parser's `reasoning_content` beside the answer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import synthcodec.session as session
from synthcodec.codeclm import CodecConfig
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.steps import StepContext, contrast, decode, improve, respond
from synthcodec.judging.pairwise import JudgeSettings
from synthcodec.llm import Completion, FakeBackend, Request
from synthcodec.llm.client import LLMClient, RecordFailed
from synthcodec.llm.openai_http import OpenAIHTTPBackend
from synthcodec.llm.reasoning import split
from synthcodec.stages.rate import Rater, rating_template
from tests.helpers import cli, read_jsonl, write_jsonl
from tests.unit.test_compare import fenced


@pytest.mark.parametrize(("text", "reasoning", "answer"), [
    ("<think>1 seems right</think>\n5", "1 seems right", "5"),
    ("...deserves 2.\n</think>\n\n5", "...deserves 2.", "5"),  # R1: the template opened it
    ("  <Thinking>\nhm\n</Thinking>ok", "hm", "ok"),
    ("<|channel|>analysis<|message|>Assistant 2: 9<|end|><|start|>assistant<|channel|>final"
     "<|message|>9 2<|return|>", "Assistant 2: 9", "9 2"),
    ("plain answer", "", "plain answer"),
    ("Close it with `</think>` in your template.", "", "Close it with `</think>` in your template."),
])
def test_split_forms(text: str, reasoning: str, answer: str) -> None:
    parts = split(text)
    assert (parts.reasoning, parts.answer, parts.cut) == (reasoning, answer, False)


def test_unclosed_trace_is_cut() -> None:
    assert split("<think>\nStill thinking about") == split("<think>Still thinking about")
    assert split("<think>Still thinking about").cut


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_client_hands_stages_the_answer_and_keeps_the_trace() -> None:
    client = LLMClient(FakeBackend(["<think>maybe 1</think>\nThe answer is 4."]))
    completion = run(client.complete(Request.chat("2+2?")))
    assert completion.text == "The answer is 4."
    assert completion.reasoning == "maybe 1"


@pytest.mark.parametrize("reply", [
    Completion("<think>Let me count the", finish_reason="length"),
    Completion("<think>Let me count the", finish_reason="stop"),
])
def test_trace_cut_by_the_limit_fails_naming_max_tokens(reply: Completion) -> None:
    client = LLMClient(FakeBackend([reply]))
    with pytest.raises(RecordFailed, match=r"inside the model's reasoning.*--max-tokens"):
        run(client.complete(Request.chat("2+2?", max_tokens=64), allow_truncated=True))


@pytest.mark.parametrize(("reply", "why"), [
    (Completion("<think>all of it</think>", finish_reason="length"), "--max-tokens"),
    (Completion("", finish_reason="stop"), "empty answer"),
])
def test_empty_answer_is_a_failure(reply: Completion, why: str) -> None:
    client = LLMClient(FakeBackend([reply]))
    with pytest.raises(RecordFailed, match=why):
        run(client.complete(Request.chat("2+2?"), allow_truncated=True))


def test_reasoning_content_of_a_parser_is_the_trace_and_content_null_fails() -> None:
    backend = OpenAIHTTPBackend("m", "http://127.0.0.1:9/v1")
    body = {"choices": [{"message": {"content": "5", "reasoning_content": "it is 1?"},
                         "finish_reason": "stop"}]}
    raw = backend.read_reply(json.dumps(body).encode())
    client = LLMClient(FakeBackend([raw]))
    completion = run(client.complete(Request.chat("x")))
    assert (completion.text, completion.reasoning) == ("5", "it is 1?")
    # Ollama's field name; and a model that spent every token thinking (content null).
    body = {"choices": [{"message": {"content": None, "reasoning": "hmm " * 50},
                         "finish_reason": "length"}]}
    client = LLMClient(FakeBackend([backend.read_reply(json.dumps(body).encode())]))
    with pytest.raises(RecordFailed, match="--max-tokens"):
        run(client.complete(Request.chat("x"), allow_truncated=True))


def test_cache_keeps_the_whole_reply_and_splits_it_again(tmp_path: Path) -> None:
    from synthcodec.cache import RequestCache

    cache = RequestCache(tmp_path / "c.sqlite")
    first = LLMClient(FakeBackend(["<think>t</think>a"]), cache=cache)
    run(first.complete(Request.chat("q")))
    unused = FakeBackend(["never sent"])
    completion = run(LLMClient(unused, cache=cache).complete(Request.chat("q")))
    assert unused.calls == []
    assert (completion.text, completion.reasoning, completion.cached) == ("a", "t", True)


# ----------------------------------------------------------------------------- rate

@pytest.mark.parametrize("reply", [
    "<think>1 seems right, or 2</think>\n5\nCorrect and complete.",
    "The response deserves 2.\n</think>\n\n5\nCorrect and complete.",
    "<think>\nscore 1?\n</think>\n5\nCorrect and complete.",
])
def test_rater_reads_the_score_after_the_trace(reply: str) -> None:
    rater = Rater(LLMClient(FakeBackend([reply])), rating_template(None), dimension="accuracy",
                  json_mode=False, reasks=0, max_tokens=256)
    result = run(rater.rate("Add 2 and 2.", "", "4"))
    assert result.score == 5
    assert "<think>" not in result.raw and "</think>" not in result.raw
    assert result.reasoning.startswith(("1 seems", "The response", "score 1"))


def test_rate_keeps_the_trace_in_lineage_not_in_the_explanation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    judge = FakeBackend(["<think>I'd say 1.</think>\n5\nAll correct."], name="r")
    monkeypatch.setattr(session, "load_backend", lambda spec, **_: judge)
    monkeypatch.setattr(session, "check_spec", lambda spec: None)
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Add 2 and 2.", "input": "",
                                               "output": "4"}])
    assert cli("rate", str(data), "--judge", "r", "--text", "-o", str(tmp_path / "run"),
               "-q", "--no-cache") == 0
    [row] = read_jsonl(tmp_path / "run" / "output.jsonl")
    assert row["score"] == 5
    assert "1." not in row["explanation"] and "think" not in json.dumps(
        {k: v for k, v in row.items() if k != "_synthcodec"})
    assert row["_synthcodec"]["judge_reasoning"] == "I'd say 1."


# -------------------------------------------------------------------------- compare

def test_compare_reads_the_verdict_not_the_trace(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def judge(request: Request) -> str:
        a_first = fenced(request, "ASSISTANT 1 ANSWER") == "GOOD"
        final = "9 2" if a_first else "2 9"
        return (f"<think>Assistant 1: 2, Assistant 2: 9? No, look again.</think>\n{final}\n"
                "The good one is better.")

    backend = FakeBackend(judge, name="j")
    monkeypatch.setattr(session, "load_backend", lambda spec, **_: backend)
    monkeypatch.setattr(session, "check_spec", lambda spec: None)
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "question": f"Q{i}", "answer": "GOOD"}
                                           for i in range(2)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": i, "question": f"Q{i}", "answer": "bad"}
                                           for i in range(2)])
    assert cli("compare", str(a), str(b), "--judge", "j", "--judge-text", "-o",
               str(tmp_path / "r"), "-q", "--no-cache") == 0
    total = json.loads((tmp_path / "r" / "report.json").read_text())["total"]
    assert (total["alpagasus"]["win"], total["alpagasus"]["tie"],
            total["alpagasus"]["lose"]) == (2, 0, 0)
    for verdict in read_jsonl(tmp_path / "r" / "output.jsonl"):
        assert "<think>" not in verdict["judge_first"]
        assert verdict["judge_reasoning"]["first"].startswith("Assistant 1: 2")


# ------------------------------------------------------------------------- generate

GOOD, BAD = "A careful, correct answer.", "No idea."


def ctx_for(strong: FakeBackend, target: FakeBackend | None = None, **cfg: Any) -> StepContext:
    return StepContext(strong=LLMClient(strong), target=LLMClient(target) if target else None,
               cfg=CodecConfig(parse_tries=1, **cfg), prompts=Prompts.load(),
               judge=JudgeSettings(json=False))


def test_contrast_judge_trace_does_not_flip_the_kept_answer() -> None:
    def strong(request: Request) -> str:
        prompt = request.messages[-1]["content"]
        if "[Assistant 1's Answer]" in prompt:
            s1 = 9 if fenced(request, "ASSISTANT 1 ANSWER") == GOOD else 2
            return (f"<think>strong 2, target 9... no.</think>\n{s1} {11 - s1}\n"
                    "The careful answer wins.")
        return f"<think>I should be careful.</think>\n{GOOD}"

    target = FakeBackend([f"<think>who knows</think>{BAD}"])
    ctx = ctx_for(FakeBackend(strong), target)
    cand = {"id": "x", "instruction": "Explain tides.", "iteration": 1, "action": None,
            "base_instruction": "Explain tides.", "history": []}
    answered = run(respond(ctx, cand))
    assert (answered["strong_answer"], answered["target_answer"]) == (GOOD, BAD)
    assert answered["answer_reasoning"] == {"strong": "I should be careful.",
                                            "target": "who knows"}
    judged = run(contrast(ctx, answered))
    assert judged["gap"] == 7.0 and judged["decision"] == "keep_strong"
    assert judged["response"] == GOOD
    assert judged["judge_reasoning"]["strong_first"].startswith("strong 2, target 9")
    assert "<think>" not in json.dumps(judged["judge_text"])


def test_decode_and_improve_read_the_answer_only() -> None:
    trace = "<think>Draft:\n1. From the trace one\n2. From the trace two\n</think>\n"

    def strong(request: Request) -> str:
        prompt = request.messages[-1]["content"]
        if prompt.startswith("Rewrite the instruction"):
            return trace + "New instruction: Explain tides to a child, in 3 sentences."
        return trace + "1. Explain how the moon moves the seas.\n2. Describe a spring tide to a sailor."

    ctx = ctx_for(FakeBackend(strong), per_metadata=2)
    meta = {"id": "m1", "use_case": "science", "skills": ["physics"]}
    assert [r["instruction"] for r in run(decode(ctx, meta))] == ["Explain how the moon moves the seas.",
                                                      "Describe a spring tide to a sailor."]
    cand = {"id": "x", "instruction": "Explain tides.", "iteration": 1, "action": None,
            "use_case": "science", "skills": ["physics"], "history": []}
    improved = run(improve(ctx, cand, ["Add a constraint."]))
    assert improved["instruction"] == "Explain tides to a child, in 3 sentences."


# ------------------------------------------------------------------------- complete

def test_complete_keeps_the_trace_out_of_the_response(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def model(request: Request) -> Completion | str:
        prompt = request.messages[-1]["content"]
        if prompt == "long":
            return Completion("<think>and on and on", finish_reason="length")
        return f"<think>Think about {prompt}.</think>\n\nAnswer to {prompt}."

    backend = FakeBackend(model, name="m")
    monkeypatch.setattr(session, "load_backend", lambda spec, **_: backend)
    monkeypatch.setattr(session, "check_spec", lambda spec: None)
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "long"}])
    assert cli("complete", str(data), "-m", "m", "-o", str(tmp_path / "r"), "-q",
               "--no-cache") == 0
    [row] = read_jsonl(tmp_path / "r" / "output.jsonl")
    assert row["response"] == "Answer to a." and "reasoning" not in row
    assert row["_synthcodec"]["reasoning"] == "Think about a."
    [failed] = read_jsonl(tmp_path / "r" / "failed.jsonl")
    assert failed["prompt"] == "long" and "--max-tokens" in failed["_synthcodec"]["reason"]

    assert cli("complete", str(data), "-m", "m", "-o", str(tmp_path / "k"), "-q",
               "--no-cache", "--keep-reasoning") == 0
    [row] = read_jsonl(tmp_path / "k" / "output.jsonl")
    assert (row["response"], row["reasoning"]) == ("Answer to a.", "Think about a.")


def test_a_lone_surrogate_in_a_reply_is_mended_not_a_crash() -> None:
    backend = OpenAIHTTPBackend("m", "http://127.0.0.1:9/v1")
    raw = backend.read_reply(b'{"choices": [{"message": {"content": "a\\ud800b \\ud83d\\ude00"}}]}')
    completion = run(LLMClient(FakeBackend([raw])).complete(Request.chat("x")))
    assert completion.text == "a\ufffdb \U0001F600"
    completion.text.encode("utf-8")  # what the journal and output.jsonl need
