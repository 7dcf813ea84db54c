"""One command of the conformance suite, run in its own process so a test can kill it.

    python -m tests.conformance.harness KIND RUN_DIR CALL_LOG [--jobs J] [--theta T]
        [--rows N] [--executor local|ray]

KIND is complete, rate, compare, generate or rounds (generate's stages by hand, the
Contrastive Filtering one round at a time). The models are scripted (FakeBackend) with a
small latency, so records are in flight when the process is killed; every request sent is
appended to CALL_LOG (one line, with the pid of the process that sent it) so the test can
count what a resume re-sent. The scripts are module-level functions, so the backends pickle
and a Ray worker runs the very same ones (`--executor ray` joins $RAY_ADDRESS).
Prints one JSON line: what the run produced, read back through the Python API's results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import synthcodec as sc
from synthcodec.llm import PermanentError, Request
from tests.helpers import read_jsonl

N_ROWS = 40
LATENCY = 0.03


@dataclass
class Logged:
    """A scripted reply that first appends the request to the call log (picklable)."""

    fn: Callable[[Request], Any]
    log: Path
    name: str

    def __call__(self, request: Request) -> Any:
        text = "\n".join(m["content"] for m in request.messages)
        with open(self.log, "a") as fh:  # one short O_APPEND write: whole lines, any process
            fh.write(f"{self.name} {os.getpid()} {hashlib.sha1(text.encode()).hexdigest()[:12]}"
                     f" {text[:40]!r}\n")
        return self.fn(request)


def logged(fn: Any, log: Path, name: str) -> sc.FakeBackend:
    return sc.FakeBackend(Logged(fn, log, name), name=name, latency=LATENCY, record_calls=False)


def task_number(request: Request) -> int:
    text = "\n".join(m["content"] for m in request.messages)
    return int(text.split("Task ", 1)[1].split()[0].strip("<>-=:.?"))


def answer(request: Request) -> Any:
    i = task_number(request)
    if i % 7 == 3:  # the server refuses these: failed rows, with the reason
        return PermanentError("HTTP 400: refused", status=400)
    return f"answer to task {i}"


def rate_judge(request: Request) -> str:
    i = task_number(request)
    return "no score here" if i % 9 == 4 else f"{i % 6}\nbecause {i}"


def compare_judge(request: Request) -> str:
    text = "\n".join(m["content"] for m in request.messages)
    i = task_number(request)
    if i % 11 == 5:
        return "unreadable"
    first = text.rindex("GOOD") < text.rindex("meh")
    return "8 4" if first else "4 8"


def complete(run: Path, log: Path, jobs: int, **run_options: Any) -> dict[str, Any]:
    rows = [{"prompt": f"Task {i} please."} for i in range(N_ROWS)]
    res = sc.complete(rows, model="m", backend=logged(answer, log, "m"), run_dir=run,
                      concurrency=jobs, **run_options)
    return {"kept": res.rows, "rejected": res.rejected, "failed": res.failed}


def rate(run: Path, log: Path, jobs: int, **run_options: Any) -> dict[str, Any]:
    rows = [{"instruction": f"Task {i}", "input": "", "output": f"answer {i}"}
            for i in range(N_ROWS)]
    res = sc.rate(rows, judge="j", backend=logged(rate_judge, log, "j"), run_dir=run, reasks=1,
                  concurrency=jobs, **run_options)
    return {"kept": res.rows, "rejected": res.rejected, "failed": res.failed}


def compare(run: Path, log: Path, jobs: int, **run_options: Any) -> dict[str, Any]:
    folder = run.parent
    a, b = folder / "a.jsonl", folder / "b.jsonl"
    for path, word in ((a, "GOOD"), (b, "meh")):
        if not path.exists():
            path.write_text("".join(json.dumps({"question_id": i, "question": f"Task {i}?",
                                                "answer": f"{word} {i}"}) + "\n"
                                    for i in range(N_ROWS)))

    res = sc.compare(a, b, judge="j", backend=logged(compare_judge, log, "j"), run_dir=run,
                     reasks=0, concurrency=jobs, **run_options)
    return {"kept": res.verdicts, "rejected": read_jsonl(run / "rejected.jsonl"),
            "failed": read_jsonl(run / "failed.jsonl")}


def codec(theta: float) -> dict[str, Any]:
    return dict(pool_size=3, per_metadata=4, max_iterations=3, theta=theta)


def generate(run: Path, log: Path, jobs: int, theta: float, n: int = 6, **run_options: Any
             ) -> dict[str, Any]:
    from tests.unit.test_codeclm_loop import SEEDS, strong_model, target_model

    res = sc.generate(SEEDS, strong="s", target="t", n=n, run_dir=run, overwrite=True,
                      backends={"strong": logged(strong_model, log, "strong"),
                                "target": logged(target_model, log, "target")},
                      codec=codec(theta), concurrency=jobs, **run_options)
    stages = json.loads((run / "stages.json").read_text())
    return {"kept": res.pairs, "rejected": res.rejected, "failed": res.failed,
            "stages": {k: {"config": v.get("config_sha"), "stats": v.get("stats", {})}
                       for k, v in stages.items() if k[0] != "_"}}


def rounds(run: Path, log: Path, jobs: int, theta: float, **run_options: Any
           ) -> dict[str, Any]:
    """generate's stages one command at a time, and its loop one round at a time, as a
    user would type them (the commands' Python bodies, with the scripted models)."""
    from synthcodec.codeclm import CodecConfig
    from synthcodec.codeclm.loop import IMPROVE, contrast_plan, improve_plan, respond_plan
    from synthcodec.codeclm.pipeline import run_metadata_command, run_stage_command
    from synthcodec.codeclm.stages import decode_plan, encode_plan, rubrics_plan
    from synthcodec.session import RunOptions
    from tests.unit.test_codeclm_loop import SEEDS, strong_model, target_model

    seeds = run.parent / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(row) + "\n" for row in SEEDS))
    cfg = CodecConfig(**codec(theta))
    options = RunOptions(progress=False, concurrency=jobs, **run_options)
    backends = {"strong": logged(strong_model, log, "strong"),
                "target": logged(target_model, log, "target")}

    def stage(plan_of: Any) -> None:
        done = run_stage_command(plan_of, run_dir=run, roles={"strong": "s", "target": "t"},
                                 cfg=cfg, options=options, backends=backends)
        assert done.exit_code == 0, done.lines

    stage(lambda ctx, models, r: encode_plan(ctx, models, str(seeds), {}, None))
    run_metadata_command(run_dir=run, cfg=cfg, overwrite=False)
    stage(lambda ctx, models, r: decode_plan(ctx, models, r.path))
    stage(lambda ctx, models, r: rubrics_plan(ctx, models, r.path))
    for r in range(1, cfg.max_iterations + 1):
        stage(respond_plan)
        stage(contrast_plan)
        waiting = any(json.loads(line)["decision"] == IMPROVE
                      for line in (run / f"contrast_{r}.jsonl").read_text().splitlines())
        if not waiting or r == cfg.max_iterations:
            break
        stage(improve_plan)
    return {"kept": read_jsonl(run / "output.jsonl"), "rejected": read_jsonl(run / "rejected.jsonl"),
            "failed": read_jsonl(run / "failed.jsonl")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["complete", "rate", "compare", "generate", "rounds"])
    p.add_argument("run", type=Path)
    p.add_argument("log", type=Path)
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--theta", type=float, default=3.0)
    p.add_argument("--rows", type=int, default=N_ROWS)
    p.add_argument("--n", type=int, default=6, help="generate: the pairs wanted")
    p.add_argument("--executor", default=os.environ.get("CONFORMANCE_EXECUTOR", "local"))
    a = p.parse_args()
    globals()["N_ROWS"] = a.rows
    if a.kind == "generate":
        out = generate(a.run, a.log, a.jobs, a.theta, a.n, executor=a.executor)
    elif a.kind == "rounds":
        out = rounds(a.run, a.log, a.jobs, a.theta, executor=a.executor)
    else:
        out = {"complete": complete, "rate": rate, "compare": compare}[a.kind](
            a.run, a.log, a.jobs, executor=a.executor)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
