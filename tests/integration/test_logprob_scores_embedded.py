"""Scores from log-probabilities on the embedded model: the logits processor's top tokens
are llama-cpp-python's own (`logprobs=True` on a model loaded with logits_all), and `rate
--scores logprobs` on real Alpaca rows gives continuous scores from a few tokens each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthcodec.llm import Request
from tests.helpers import cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("require_embedded")]


def test_top_logprobs_match_llama_cpps_own() -> None:
    from llama_cpp import Llama

    from synthcodec.llm.llamacpp import LlamaCppBackend, default_gguf
    from synthcodec.stages.rate import rating_schema

    request = Request.chat("Rate the answer 'Paris' to 'What is the capital of France?' from "
                           "0 to 5 as JSON.", max_tokens=8, top_logprobs=5,
                           json_schema=rating_schema())
    ours = LlamaCppBackend()._run(request)
    assert ours.token_logprobs is not None and len(ours.token_logprobs) == ours.completion_tokens
    assert "".join(t.token for t in ours.token_logprobs) == ours.text
    theirs = Llama(model_path=str(default_gguf()), n_ctx=4096, logits_all=True, verbose=False)
    out = theirs.create_chat_completion(
        messages=list(request.messages), temperature=0.0, max_tokens=8, seed=request.seed(),
        response_format={"type": "json_object", "schema": request.json_schema},
        logprobs=True, top_logprobs=5)
    content = out["choices"][0]["logprobs"]["content"]
    assert out["choices"][0]["message"]["content"] == ours.text
    for mine, ref in zip(ours.token_logprobs, content):
        assert mine.token == ref["token"]
        assert mine.logprob == pytest.approx(float(ref["logprob"]), abs=1e-3)
        want = sorted(((t["token"], float(t["logprob"])) for t in ref["top_logprobs"]),
                      key=lambda t: -t[1])[:5]
        assert [t for t, _ in mine.top] == [t for t, _ in want]
        assert [lp for _, lp in mine.top] == pytest.approx([lp for _, lp in want], abs=1e-3)


def test_rate_scores_from_logprobs_on_real_rows(shared_data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_data / "alpaca" / "random_9k.json"
    if not data.exists():
        pytest.skip(f"{data} is absent")
    run = tmp_path / "run"
    assert cli("rate", str(data), "--limit", "4", "--scores", "logprobs", "--no-judge-check",
               "-q", "-o", str(run)) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (run / "output.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row["score_from"] == "logprobs" and 0 <= row["score"] <= 5
        assert int(row["score"]) <= row["score_sampled"] + 1  # near the digit written
    assert any(row["score"] != int(row["score"]) for row in rows)  # continuous, not ties
    usage = json.loads((run / "manifest.json").read_text())["usage_total"]
    assert usage["completion_tokens"] <= 12 * usage["requests"]  # the score alone
