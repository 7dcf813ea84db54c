"""The run driver: plans run in order through one run directory and one set of models, each
with its `before` step, its published files and manifest, and its `after` pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthcodec.driver import Plan, Published, RunSummary, Summary, run_plans
from synthcodec.executors import Item, Stage
from synthcodec.llm.client import RecordFailed
from synthcodec.records import Record
from synthcodec.session import Models, RunOptions
from synthcodec.store import Journal, RunDir
from tests.helpers import read_jsonl


def items(n: int) -> list[Item]:
    return [Item(id=f"r{i}", idx=i, record={"x": i}) for i in range(n)]


def test_before_stage_after_in_order_into_one_run(tmp_path: Path) -> None:
    events: list[Any] = []

    async def double(record: Record) -> Record:
        events.append(("run", record["x"]))
        return {"x": record["x"], "double": 2 * record["x"]}

    async def before(models: Models, run_path: Path) -> dict[str, Any]:
        events.append(("before", type(models).__name__, run_path))
        return {"checked": "yes"}

    def after(run: RunDir, journal: Journal, summary: Summary) -> str:
        events.append(("after", summary.kept, (run.path / "output.jsonl").exists()))
        return f"{summary.kept} doubled"

    plan = Plan(Stage("double", double), lambda: items(3), 3, before=before, after=after)
    result = run_plans([plan], tmp_path / "run", {"stage": "double"},
                       RunOptions(progress=False, no_cache=True))

    assert isinstance(result, RunSummary) and result.exit_code == 0
    assert result.passes == {"double": "3 doubled"}
    assert [s.kept for s in result.stages] == [3]
    # before runs first, on the open models; after sees the published outputs
    assert events[0] == ("before", "Models", tmp_path / "run")
    assert sorted(e for e in events if e[0] == "run") == [("run", 0), ("run", 1), ("run", 2)]
    assert events[-1] == ("after", 3, True)
    assert [r["double"] for r in read_jsonl(tmp_path / "run" / "output.jsonl")] == [0, 2, 4]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["checked"] == "yes" and manifest["stage"] == "double"
    assert manifest["counts"] == {"input": 3, "ok": 3, "rejected": 0, "failed": 0}


def test_a_run_whose_records_all_fail_exits_1(tmp_path: Path) -> None:
    async def fail(record: Record) -> Record:
        raise RecordFailed("no way")

    seen: list[Summary] = []
    plan = Plan(Stage("fail", fail), lambda: items(2), 2, failed_text="things broke",
                after=lambda run, journal, summary: seen.append(summary))
    result = run_plans([plan], tmp_path / "run", {"stage": "fail"},
                       RunOptions(progress=False, no_cache=True))
    assert result.exit_code == 1 and seen == result.stages
    assert "2 things broke" in "\n".join(result.stages[0].lines())
    assert len(read_jsonl(tmp_path / "run" / "failed.jsonl")) == 2
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["exit_code"] == 1


def test_a_stage_line_says_its_counts_and_a_pass_only_line_its_files(tmp_path: Path) -> None:
    from synthcodec.llm.client import Stats

    def summary(**counts: int) -> Summary:
        return Summary(run_dir=tmp_path, records_in=counts.get("records_in", 0),
                       kept=counts.get("kept", 0), rejected=counts.get("rejected", 0),
                       failed=counts.get("failed", 0), resumed=0, stats=Stats(), seconds=0.0,
                       interrupted=False, stage="s",
                       outputs={"out.jsonl": counts.get("written", 0)})

    ran = summary(records_in=3, kept=2, rejected=1, written=2)
    assert ran.line() == "s: ok 2 | rejected 1 | failed 0 -> out.jsonl (2)"
    assert summary(written=5).line() == "s: wrote out.jsonl (5)"


def test_a_pass_runs_a_sub_run_that_drains_on_ctrl_c_and_is_skipped_once_done(
        tmp_path: Path) -> None:
    """A pass runs outside the driver's event loop, so it may run plans itself (the
    experiment's steps): a Ctrl-C reaches that sub-run's executor, which drains the records
    in flight; a pass with `skip_if_done` is redone until it finishes, then skipped."""
    import asyncio
    import os
    import signal

    async def slow(record: Record) -> Record:
        if record["x"] == 2:  # Ctrl-C while the sub-run's records are in flight
            os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.2)
        return record

    sub_runs: list[Summary] = []

    def sub_run(run: RunDir, journal: Journal | None, stopped: bool) -> Published:
        sub = run_plans([Plan(Stage("slow", slow), lambda: items(30), 30,
                              concurrency=lambda models: 2)],
                        tmp_path / "sub", {"stage": "slow"},
                        RunOptions(progress=False, no_cache=True))
        sub_runs.append(sub.stages[0])
        (tmp_path / "done").write_text(str(sub.stages[0].kept))
        return Published({})

    def outer() -> RunSummary:
        plan = Plan(None, list, 0, name="step", settings={"n": 30}, publish=sub_run,
                    skip_if_done=[tmp_path / "done"])
        return run_plans([plan], tmp_path / "outer", {"run": "outer"},
                         RunOptions(progress=False, no_cache=True, overwrite=True),
                         specs={}, ledger={})

    first = outer()
    assert sub_runs[0].interrupted and 0 < sub_runs[0].kept < 30  # drained, not killed
    assert not first.stages[0].skipped
    outer()  # the same settings and its file is there: skipped, no sub-run
    assert len(sub_runs) == 1
    ledger = json.loads((tmp_path / "outer" / "stages.json").read_text())
    assert ledger["step"]["finished"]
