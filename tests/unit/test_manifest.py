"""One manifest shape: `generate`'s RUN/manifest.json has the keys `rate`'s has, with
generate's meanings (docs/run-layout.md), on scripted models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthcodec.codeclm import CodecConfig, generate
from synthcodec.llm import FakeBackend, Request
from synthcodec.session import RunOptions
from synthcodec.stages.rate import rate_file
from tests.helpers import read_jsonl, write_jsonl
from tests.unit.test_codeclm_loop import SEEDS, strong_model, target_model


def _manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def _rate_reply(request: Request) -> str:
    return "4\nfine"


def test_generate_and_rate_write_the_same_manifest_keys(tmp_path: Path) -> None:
    options = RunOptions(progress=False, cache_path=str(tmp_path / "cache.sqlite"))
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    result = generate(seeds=str(seeds), run_dir=tmp_path / "gen", strong="fake:strong",
                      target="fake:target", n=100, cfg=CodecConfig(pool_size=3, per_metadata=3),
                      options=options, backends={"strong": FakeBackend(strong_model),
                                                 "target": FakeBackend(target_model)})
    rows = [{"instruction": f"Task {i}", "input": "",
             "output": f"a full answer to task {i} in several words"} for i in range(6)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    summary = rate_file(data, tmp_path / "rate", judge="fake:judge", options=options,
                        backends={"judge": FakeBackend(_rate_reply)})
    gen, rate = _manifest(tmp_path / "gen"), _manifest(tmp_path / "rate")
    assert result.exit_code == summary.exit_code == 0
    assert sorted(gen) == sorted(rate)
    assert "judge_check" in gen and "config_sha256" in gen and "this_invocation" in gen
    assert sorted(gen["counts"]) == sorted(rate["counts"]) == ["failed", "input", "ok",
                                                                 "rejected"]
    # generate's meanings: ok = the pairs kept, input = what its three files account for
    out = tmp_path / "gen"
    kept, rejected = len(read_jsonl(out / "output.jsonl")), len(read_jsonl(out / "rejected.jsonl"))
    assert kept > 0 and gen["counts"]["ok"] == kept and gen["counts"]["rejected"] == rejected
    assert gen["counts"]["input"] == kept + rejected + gen["counts"]["failed"]
    assert gen["outputs"] == {"output.jsonl": kept, "rejected.jsonl": rejected,
                              "failed.jsonl": gen["counts"]["failed"]}
    assert gen["input_sha256"] != rate["input_sha256"]
    assert gen["this_invocation"]["requests"] == gen["usage_total"]["requests"] > 0
    # a resumed invocation sends nothing more and says so
    generate(seeds=str(seeds), run_dir=tmp_path / "gen", strong="fake:strong",
             target="fake:target", n=100, cfg=CodecConfig(pool_size=3, per_metadata=3),
             options=options, backends={"strong": FakeBackend(strong_model),
                                        "target": FakeBackend(target_model)})
    again = _manifest(tmp_path / "gen")
    assert sorted(again) == sorted(gen) and again["config_sha256"] == gen["config_sha256"]
    assert again["this_invocation"]["requests"] == 0 and again["this_invocation"]["resumed"] > 0
    assert again["usage_total"] == gen["usage_total"]
