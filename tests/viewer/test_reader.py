"""rundir_reader: kinds, rows with status/reason/scores, lineage, live runs, hand review."""

from __future__ import annotations

import json
from pathlib import Path

from synthcodec.rundir_reader import Run, append_review, is_live, load_review
from synthcodec.stages.select import select_rows
from synthcodec.stages.select_rules import Rule
from synthcodec.store import RunDir
from tests.helpers import read_jsonl, write_jsonl
from tests.viewer.sample_runs import XSS


def test_generate_rows_and_lineage(gen_run: Path) -> None:
    run = Run(gen_run)
    assert run.kind == "generate" and run.status() == "complete"
    assert run.models() == {"strong": "fake:strong", "target": "fake:target"}
    rows = list(run.rows())
    assert sorted(r.status for r in rows) == ["kept"] * 6 + ["rejected"] * 3
    rejected = [r for r in rows if r.status == "rejected"]
    assert all(r.reason.startswith("unresolved") and r.iteration == 4 for r in rejected)
    kept = next(r for r in rows if r.status == "kept" and "s1" in r.data["seed_ids"])
    assert kept.gap in (7.0, -7.0) and kept.use_case == "creative writing"
    lineage = run.lineage(kept)
    assert XSS in lineage["seeds"][0]["instruction"]
    assert lineage["metadata"]["skills"] == ["poetry", "humor"]
    assert lineage["rubric"]["actions"]
    step = lineage["steps"][-1]
    assert set(step["scores"]) == {"strong_first", "target_first"}
    assert set(step["judge_text"]) == {"strong_first", "target_first"}
    unresolved = run.lineage(rejected[0])
    assert [s["iteration"] for s in unresolved["steps"]] == [1, 2, 3, 4]
    assert all(s.get("judge_text") for s in unresolved["steps"])


def test_compare_and_rate_rows(cmp_run: Path, rate_run: Path) -> None:
    cmp = Run(cmp_run)
    assert cmp.kind == "compare"
    rows = list(cmp.rows())
    assert len(rows) == 9 and {r.use_case for r in rows} == {"writing", "coding", "math"}
    assert all(r.data["judge_first"] and r.data["judge_second"] for r in rows)
    rate = Run(rate_run)
    assert rate.kind == "rate"
    statuses = [r.status for r in rate.rows()]
    assert statuses.count("failed") == 2 and statuses.count("kept") == 6
    failed = next(r for r in rate.rows() if r.status == "failed")
    assert "no readable rating" in failed.reason


def test_win_tie_lose_comes_from_the_index_and_honours_review(cmp_run: Path) -> None:
    from collections import Counter

    from synthcodec.viewer.index import RowIndex

    run = Run(cmp_run)
    index = RowIndex(run)
    expected: dict[str, Counter[str]] = {}
    for r in run.rows():
        if r.status == "kept":
            expected.setdefault(r.use_case, Counter())[str(r.data["codeclm"])] += 1
    assert index.outcomes_per_category() == expected
    assert sum(sum(c.values()) for c in expected.values()) == 9
    math = next(r for r in run.rows() if r.use_case == "math")
    index.mark(append_review(cmp_run, math.key, "rejected", "wrong question"))
    assert sum(index.outcomes_per_category()["math"].values()) == 2


def test_decode_duplicates_are_in_the_row_envelope(gen_run: Path) -> None:
    from synthcodec.codeclm.stages import dedupe_instructions

    sea = "Write a short poem about the sea at night."
    rows = [{"id": f"m000{i}-i0", "metadata_id": f"m000{i}", "k": 0, "instruction": sea}
            for i in (0, 1)]
    kept, dropped = dedupe_instructions(rows, 0.7)
    reason = "near-duplicate (ROUGE-L > 0.7)"
    assert [r["id"] for r in kept] == ["m0000-i0"]
    assert dropped == [{"id": "m0001-i0", "metadata_id": "m0001", "k": 0, "instruction": sea,
                        "_synthcodec": {"id": "m0001-i0", "status": "rejected", "reason": reason}}]
    (gen_run / "rejects").mkdir(exist_ok=True)
    write_jsonl(gen_run / "rejects" / "decode_duplicates.jsonl", dropped)
    row = next(r for r in Run(gen_run).rows() if r.stage == "decode_duplicates")
    assert (row.key, row.status, row.reason) == ("decode_duplicates:m0001-i0", "rejected", reason)


def test_live_run_is_read_from_the_journal(tmp_path: Path) -> None:
    """A run whose writer holds the lock: rows come from journal.sqlite, read-only, and the
    writer can keep committing while we read."""
    rd = RunDir(tmp_path / "live").open({"stage": "rate", "models": {"judge": "fake:x"}})
    try:
        journal = rd.journal("rate")
        journal.record("a", 0, "ok", [{"instruction": "one", "score": 4.0,
                                       "_synthcodec": {"id": "a", "index": 0}}])
        run = Run(tmp_path / "live")
        assert is_live(run.path) and run.status() == "live"
        assert [r.data["instruction"] for r in run.rows()] == ["one"]
        journal.record("b", 1, "failed", [{"instruction": "two", "_synthcodec": {
            "id": "b", "index": 1, "status": "failed", "reason": "boom"}}])
        rows = list(run.rows())
        assert [(r.status, r.reason) for r in rows] == [("kept", ""), ("failed", "boom")]
    finally:
        rd.close()
    assert not is_live(tmp_path / "live")


def test_review_is_append_only_and_latest_wins(gen_run: Path) -> None:
    append_review(gen_run, "m0000-i0", "rejected", "too easy")
    append_review(gen_run, "m0000-i1", "kept", "")
    append_review(gen_run, "m0000-i1", "clear")
    assert set(load_review(gen_run)) == {"m0000-i0"}
    assert len((gen_run / "review.jsonl").read_text().splitlines()) == 3
    row = next(r for r in Run(gen_run).rows() if r.key == "m0000-i0")
    assert row.status == "kept" and row.final_status == "rejected"


def test_select_honours_review(rate_run: Path, tmp_path: Path) -> None:
    rows = read_jsonl(rate_run / "output.jsonl")
    best = max(rows, key=lambda r: r["score"])
    low = min(rows, key=lambda r: r["score"])
    assert best["score"] >= 4.5 > low["score"]
    append_review(rate_run, best["_synthcodec"]["id"], "rejected", "wrong")
    append_review(rate_run, low["_synthcodec"]["id"], "kept", "fine by me")
    select_rows(rate_run, tmp_path / "kept.jsonl", Rule(min=4.5))
    kept = [json.loads(x) for x in (tmp_path / "kept.jsonl").read_text().splitlines()]
    ids = {r["_synthcodec"]["id"] for r in kept}
    assert best["_synthcodec"]["id"] not in ids and low["_synthcodec"]["id"] in ids
