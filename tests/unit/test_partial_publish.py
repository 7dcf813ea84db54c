"""Issue 18 §5: a run that stops early (exit 4 at its budget, 130 interrupted) publishes what
is done, so the user sees what was paid for; the manifest says it is incomplete and how many
records are missing, and the run that finishes replaces the files."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from synthcodec.codeclm import CodecConfig, generate
from synthcodec.llm import FakeBackend
from synthcodec.session import RunOptions
from tests.helpers import popen_synthcodec, read_jsonl, synthcodec, write_jsonl
from tests.unit.test_codeclm_loop import SEEDS, strong_model, target_model


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "prompt": f"question {i}: " + "word " * 40} for i in range(n)]


def _manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def test_a_budget_stop_publishes_the_records_done(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", _rows(30))
    run = tmp_path / "run"
    common = ["complete", str(src), "-m", "", "--max-tokens", "64", "-j", "4", "--no-cache",
              "-o", str(run), "--price", "m=1000,1000", "-q"]
    with serve_in_subprocess() as (_, url):
        common[3] = f"m@{url}"
        stopped = synthcodec(*common, "--budget", "1")
        m1 = _manifest(run)
        done = len(read_jsonl(run / "output.jsonl"))
        finished = synthcodec(*common, "--budget", "100")
    assert stopped.returncode == 4, stopped.stderr
    assert 0 < done == m1["counts"]["ok"] < 30
    assert m1["status"] == "budget" and m1["incomplete"] is True and m1["missing"] == 30 - done
    assert m1["outputs"]["output.jsonl"] == done
    assert f"{30 - done} of 30 records are still to do" in stopped.stderr
    assert finished.returncode == 0, finished.stderr
    assert len(read_jsonl(run / "output.jsonl")) == 30
    m2 = _manifest(run)
    assert m2["status"] == "complete" and "incomplete" not in m2 and "missing" not in m2


def test_an_interrupted_run_publishes_the_records_done(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl",
                      [{"instruction": f"say {i}", "output": f"{i}"} for i in range(40)])
    run = tmp_path / "run"
    with serve_in_subprocess(latency=0.2) as (_, url):
        proc = popen_synthcodec("rate", str(src), "--judge", f"m@{url}", "--json", "-j", "2",
                                "--no-cache", "-o", str(run))
        stats = url.removesuffix("/v1") + "/stats"
        deadline = time.monotonic() + 60
        while json.loads(urllib.request.urlopen(stats).read())["completed"] < 6:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # the first Ctrl-C: drain
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rows = read_jsonl(run / "output.jsonl")
    manifest = _manifest(run)
    assert manifest["status"] == "interrupted" and 0 < len(rows) < 40
    assert manifest["missing"] == 40 - len(rows) - manifest["counts"]["failed"]
    assert all("score" in row for row in rows)
    assert "interrupted: run the same command again to resume" in err


def test_generate_stopped_at_its_budget_publishes_the_pairs_kept(tmp_path: Path) -> None:
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    config = CodecConfig(pool_size=3, per_metadata=3)
    prices = ("strong=1000,2000", "target=100,100")

    def run(name: str, budget: float | None) -> Any:
        options = RunOptions(progress=False, no_cache=True, price=prices, budget=budget,
                             concurrency=1)
        return generate(seeds=str(seeds), run_dir=tmp_path / name, strong="fake:strong",
                        target="fake:target", n=100, cfg=config, options=options,
                        backends={"strong": FakeBackend(strong_model),
                                  "target": FakeBackend(target_model)})

    whole = run("whole", None)
    assert whole.report is not None
    by_stage = whole.report["cost"]["usd_by_stage"]
    before_loop = sum(usd for stage, usd in by_stage.items() if stage != "loop")
    stopped = run("split", before_loop + by_stage["loop"] * 0.6)
    assert stopped.exit_code == 4
    kept = read_jsonl(tmp_path / "split" / "output.jsonl")
    manifest = _manifest(tmp_path / "split")
    assert 0 < len(kept) < whole.report["kept"]
    assert manifest["status"] == "budget" and manifest["incomplete"] is True
    assert manifest["missing"] == 100 - len(kept)
    whole_rows = read_jsonl(tmp_path / "whole" / "output.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "_synthcodec"} for r in rows]  # noqa: E731
    assert all(row in strip(whole_rows) for row in strip(kept))
