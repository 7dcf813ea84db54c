"""`--executor ray` against the local executor on one workload, side by side in one run.

2,000 `synthcodec complete` requests to a mock OpenAI server answering each in 0.2 s (no
cap on requests served at once), 64 in flight over the whole run (`-j 64`: with Ray, each of
the P shards running at once gets 64/P). Every run is the CLI as a user runs it, with a
fresh cache; time is the run's own (`this_invocation.seconds` in manifest.json: from
opening the model clients, after the input check and the run directory's opening, to the
published output), and `wall` is the whole process.

- local: the local executor (ideal: 2000 / 64 x 0.2 s = 6.25 s);
- ray, joined: `--executor ray` on a Ray cluster started beforehand (2 CPUs, 127.0.0.1),
  as on a real cluster;
- ray, started: `--executor ray` with no cluster, so the command starts a local one;
- ray, 1 record: the fixed cost of a Ray stage on the joined cluster (connect, one shard).

Ray's start-up = started - joined; its per-record cost = (joined - 1 record - local) / N.
Last, the driver's side of a shard: `Journal.merge` of a 500-row shard into the run's
journal (one SQLite transaction), per row, median of 20.

    .venv/bin/python benchmarks/bench_ray.py                # 2,000 requests, about 2 minutes
    .venv/bin/python benchmarks/bench_ray.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.*
from tests.mock_server import serve_in_subprocess  # noqa: E402
from tests.ray_cluster import ray_cluster  # noqa: E402

SYNTHCODEC = str(Path(sys.executable).with_name("synthcodec"))


def run_once(src: Path, url: str, work: Path, inflight: int, env: dict[str, str],
             *extra: str) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(dir=work))
    t0 = time.perf_counter()
    result = subprocess.run([SYNTHCODEC, "complete", str(src), "-m", f"mock-model@{url}",
                             "-o", str(run_dir / "run"), "--cache", str(run_dir / "cache.sqlite"),
                             "-j", str(inflight), "-q", *extra],
                            capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"synthcodec failed ({result.returncode}): {result.stderr[-3000:]}")
    manifest = json.loads((run_dir / "run" / "manifest.json").read_text())
    return {"seconds": manifest["this_invocation"]["seconds"], "wall": wall,
            "requests": manifest["this_invocation"]["requests"]}


def merge_cost(work: Path, rows: int = 500, repeat: int = 20) -> float:
    """Microseconds per row for the driver to merge one shard journal into the run's."""
    from synthcodec.store import OK, Journal, connect

    shard = Journal(connect(work / "shard.sqlite"), "bench")
    data = json.dumps([{"instruction": "x" * 200, "output": "y" * 400, "score": 4.5}])
    shard.merge((f"{i:07d}-0123456789", i, OK, data) for i in range(rows))
    stored = list(shard.raw_rows())
    times = []
    for rep in range(repeat):
        journal = Journal(connect(work / f"run{rep}.sqlite"), "bench")
        journal.prepare()
        t0 = time.perf_counter()
        journal.merge(stored)
        times.append((time.perf_counter() - t0) / rows * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    src, one = work / "prompts.jsonl", work / "one.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Task {i}: say something."}) + "\n"
                           for i in range(args.requests)))
    one.write_text(json.dumps({"prompt": "Task 0: say something."}) + "\n")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    results: dict[str, list[dict[str, Any]]] = {}
    with serve_in_subprocess(latency=args.latency) as (_, url), ray_cluster() as joined:
        joined_env = {**base_env, **joined}
        for _ in range(args.repeat):
            runs = {
                "local": (src, base_env, ()),
                "ray, joined": (src, joined_env, ("--executor", "ray")),
                "ray, started": (src, base_env, ("--executor", "ray")),
                "ray, 1 record": (one, joined_env, ("--executor", "ray")),
            }
            for name, (data, env, extra) in runs.items():
                results.setdefault(name, []).append(
                    run_once(data, url, work, args.inflight, env, *extra))

    ideal = args.requests / args.inflight * args.latency
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "wall")}
           for name, rs in results.items()}
    print(f"{args.requests} requests, {args.latency:g} s each, {args.inflight} in flight; "
          f"ideal {ideal:.2f} s; median of {args.repeat}")
    print("| executor | run (s) | process wall (s) | requests |")
    print("|---|---|---|---|")
    for name, rs in results.items():
        print(f"| {name} | {med[name]['seconds']:.2f} | {med[name]['wall']:.2f} | "
              f"{rs[0]['requests']} |")
    startup = med["ray, started"]["seconds"] - med["ray, joined"]["seconds"]
    fixed = med["ray, 1 record"]["seconds"]
    per_record = (med["ray, joined"]["seconds"] - fixed - med["local"]["seconds"]) / args.requests
    print(f"Ray start-up (a local cluster): {startup:.2f} s; fixed cost of a Ray stage on a "
          f"running cluster: {fixed:.2f} s; per-record cost over local: "
          f"{per_record * 1000:.2f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"driver's merge of a 500-row shard: {merge_cost(Path(tmp)):.1f} us per row "
              "(median of 20)")


if __name__ == "__main__":
    main()
