"""`synthcodec generate` end to end on the embedded model: 1 seed, tiny sizes, 2 cores."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from synthcodec.records import reason_of
from tests.helpers import cli

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]



def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x]


def test_generate_on_the_embedded_model(require_embedded: None, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["generate", str(REPO / "examples" / "seeds.jsonl"), "--strong", "local",
            "--target", "local", "--limit", "1", "-n", "1", "--size", "1", "--per-metadata", "1",
            "--max-iterations", "2", "--max-tokens", "96", "--judge-max-tokens", "32",
            "--judge-reasks", "0", "--parse-tries", "2",
            "--format", "alpaca", "-q", "-o", str(run)]
    started = time.monotonic()
    code = cli(*argv)
    err = capsys.readouterr().err
    print(f"generate on the embedded model: {time.monotonic() - started:.1f}s")
    assert code == 0, err
    assert "WARNING: strong and target are the same model" in err
    assert "stopped:" in err and "kept by iteration" in err

    seeds = {s["id"] for s in read(REPO / "examples" / "seeds.jsonl")[:1]}
    metadata = {m["id"]: m for m in read(run / "metadata.jsonl")}
    assert len(metadata) == 1
    pairs, rejected = read(run / "output.jsonl"), read(run / "rejected.jsonl")
    failed_rows = read(run / "failed.jsonl")
    # Every decoded instruction ends exactly once: kept, or rejected with a reason.
    instructions = read(run / "instructions.jsonl")
    assert instructions, "decode wrote no instruction"
    assert len(pairs) + len(rejected) + len(failed_rows) == len(instructions)
    # The embedded judge answers in JSON under a grammar, so judgements are readable; a row
    # that still fails is rejected as failed with the reason, never given a default score.
    for row in pairs + rejected + failed_rows:  # every row leads to its metadata and seeds
        assert row["metadata_id"] in metadata
        assert set(row["seed_ids"]) <= seeds and row["seed_ids"]
        assert row["use_case"] and row["skills"]
        assert row["response"] if row in pairs else reason_of(row)
    for row in pairs:
        assert abs(row["gap"]) > 3 and row["iteration"] in (1, 2)
        assert set(row["scores"]) == {"strong_first", "target_first"}

    summary = json.loads((run / "summary.json").read_text())
    assert summary["kept"] == len(pairs) and summary["stop"] in ("reached", "exhausted")
    # The judge check ran first (the seeds have no responses: the packaged probe answers).
    card = json.loads((run / "judge_card.json").read_text())
    assert card["role"] == "pairwise" and summary["judge_check"]["line"] == card["line"]
    assert err.index(card["line"]) < err.index("kept by iteration")
    assert summary["warnings"]
    assert (run / "gap_histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((run / "pairs_alpaca.json").read_text())) == len(pairs)

    # The same command again: kept and rejected rows are journaled and sent nothing; a
    # failed row is retried, and only the request judging/pairwise.py cancelled when the other
    # order failed (so it never reached the cache) can be sent again.
    sent = summary["llm"]["requests"]
    failed = len(failed_rows)
    assert cli(*argv) == 0
    again = json.loads((run / "summary.json").read_text())
    assert again["kept"] == len(pairs)
    assert sent <= again["llm"]["requests"] <= sent + failed
