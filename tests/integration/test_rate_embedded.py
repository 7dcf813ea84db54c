"""rate → select → export on real Alpaca rows with the embedded model.

Kept small (12 rows, replies capped at 48 tokens) because the machine has 2 shared cores.
The score comes first, so capped replies also exercise the "cut explanation still counts" path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli

pytestmark = pytest.mark.integration

N_ROWS = 12



def test_rate_select_export_on_real_alpaca(shared_data: Path, require_embedded: None,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_data / "alpaca" / "random_9k.json"
    if not data.exists():
        pytest.skip(f"{data} is absent")
    run = tmp_path / "run"
    argv = ["rate", str(data), "--judge", "local", "--limit", str(N_ROWS), "--max-tokens", "48",
            "-q", "-o", str(run)]
    assert cli(*argv) == 0, capsys.readouterr().err

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    # The judge check ran first, on 2 of the rows: its card is in the run and the manifest.
    card = json.loads((run / "judge_card.json").read_text())
    assert card["role"] == "rater" and card["probes_per_kind"] == 2
    assert manifest["judge_check"]["verdict"] == card["verdict"]
    rated = [json.loads(x) for x in (run / "output.jsonl").read_text().splitlines()]
    failed = [json.loads(x) for x in (run / "failed.jsonl").read_text().splitlines()]
    assert len(rated) + len(failed) == N_ROWS
    # The embedded judge answers JSON under a grammar, so nearly every row gets a score.
    assert len(rated) >= N_ROWS // 2, [f["_synthcodec"]["reason"] for f in failed]
    for row in rated:
        assert 0 <= row["score"] <= 5 and isinstance(row["judge_text"], str)
        assert {"instruction", "input", "output", "explanation"} <= set(row)
    assert all(f["_synthcodec"]["reason"] for f in failed)  # quarantined with a reason, never a default score

    # Running the same command again finds everything done and sends nothing.
    capsys.readouterr()
    assert cli(*argv) == 0
    assert "requests sent 0" in capsys.readouterr().err

    out = tmp_path / "top.json"
    assert cli("select", str(run), "--top", "5", "--format", "alpaca", "-o", str(out)) == 0
    kept = json.loads(out.read_text())
    assert len(kept) == min(5, len(rated))
    assert all(set(k) == {"instruction", "input", "output"} for k in kept)
    assert (run / "scores.png").read_bytes()[:4] == b"\x89PNG"

    assert cli("select", str(run), "--min-score", "4.5", "-o", str(tmp_path / "kept.jsonl")) == 0
    summary = json.loads((tmp_path / "kept.summary.json").read_text())
    assert summary["rated"] == len(rated) and summary["kept"] + summary["rejected"] == len(rated)
