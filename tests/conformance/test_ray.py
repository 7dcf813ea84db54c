"""`--executor ray` beyond the conformance suite: a Ray worker killed mid-run, `rate`
over two HTTP endpoints giving the very rows of the local executor, and a token cap split
over the shards.

They run on the session's local Ray cluster (tests/ray_cluster.py: 2 CPUs, 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conformance.test_executor import harness, normalized
from tests.helpers import REPO, cli_env
from tests.mock_server import serve_in_subprocess

ROWS = 200


def worker_pids(log: Path, driver: int) -> dict[int, int]:
    """Requests sent per process other than the driver (the Ray workers), from the call log."""
    sent: dict[int, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        pid = int(line.split()[1])
        if pid != driver:
            sent[pid] = sent.get(pid, 0) + 1
    return sent


def test_killing_a_ray_worker_mid_run_loses_and_repeats_nothing(
        tmp_path: Path, ray_env: dict[str, str]) -> None:
    env = {**cli_env(), "SYNTHCODEC_CACHE": str(tmp_path / "ref.sqlite")}
    (tmp_path / "ref").mkdir()
    reference = harness("rate", tmp_path / "ref" / "run", tmp_path / "ref.log", "--rows",
                        str(ROWS), env=env)  # the local executor

    (tmp_path / "ray").mkdir()
    log = tmp_path / "ray.log"
    env = {**cli_env(), **ray_env, "SYNTHCODEC_CACHE": str(tmp_path / "ray.sqlite")}
    proc = harness("rate", tmp_path / "ray" / "run", log, "--rows", str(ROWS), "--executor",
                   "ray", wait=False, env=env)
    deadline = time.monotonic() + 120
    while True:  # a worker well into a shard (25 records, 2 at a time)
        busy = [pid for pid, n in worker_pids(log, proc.pid).items() if n >= 8]
        if busy:
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no worker sent anything"
        time.sleep(0.01)
    before = set(worker_pids(log, proc.pid))
    os.kill(busy[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])

    assert normalized(result) == normalized(reference)  # no loss
    ids = [row["_synthcodec"]["id"] for key in ("kept", "rejected", "failed")
           for row in result[key]]
    assert len(ids) == len(set(ids)) == ROWS  # no duplicates
    # A new worker process took over the killed one's CPU slot (and Ray re-ran its shard).
    assert set(worker_pids(log, proc.pid)) - before
    assert not (tmp_path / "ray" / "run" / "shards").exists()  # every shard merged


def test_rate_over_two_endpoints_on_ray_gives_the_local_rows(
        tmp_path: Path, ray_env: dict[str, str], shared_data: Path) -> None:
    data = shared_data / "alpaca" / "random_9k.json"
    with serve_in_subprocess(latency=0.02) as (_, url1), \
            serve_in_subprocess(latency=0.02) as (_, url2):
        outputs = {}
        for executor in ("local", "ray"):
            env = {**cli_env(), **ray_env, "SYNTHCODEC_CACHE": str(tmp_path / f"{executor}.db")}
            run = tmp_path / executor
            done = subprocess.run(
                [sys.executable, "-m", "synthcodec", "rate", str(data), "--judge",
                 f"m@{url1},{url2}", "--json", "--limit", "300", "-j", "8", "-o", str(run),
                 "--executor", executor, "-q", "--no-judge-check"],  # only the workers' requests
                cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            outputs[executor] = {name: (run / name).read_bytes()
                                 for name in ("output.jsonl", "rejected.jsonl", "failed.jsonl")}
            manifest = json.loads((run / "manifest.json").read_text())
            assert manifest["counts"]["ok"] == 300
            assert manifest["this_invocation"]["requests"] == 300
            # Both endpoints answered, and the manifest counts what the workers sent.
            counts = manifest["endpoints"]
            assert len(counts) == 2 and all(c["answered"] > 0 for c in counts.values())
    assert outputs["ray"] == outputs["local"]


def test_a_backend_that_cannot_pickle_is_refused_in_one_line(tmp_path: Path) -> None:
    import threading

    import synthcodec as sc
    from synthcodec.errors import UserError

    lock = threading.Lock()  # cannot be pickled: the backend cannot go to a worker
    backend = sc.FakeBackend(lambda request: str(lock), name="x")
    with pytest.raises(UserError, match="cannot be pickled"):
        sc.complete([{"prompt": "hi"}], model="m", backend=backend, run_dir=tmp_path / "r",
                    executor="ray")


def test_a_cap_far_above_the_run_stops_nothing(tmp_path: Path, ray_env: dict[str, str]) -> None:
    """--max-tokens-total (like --budget) split over the shards: a cap the run never nears
    lets every shard run, queued ones included (they once got a share of nothing: exit 4
    after the first shard)."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Task {i}"}) + "\n" for i in range(ROWS)))
    env = {**cli_env(), **ray_env, "SYNTHCODEC_CACHE": str(tmp_path / "cache.sqlite")}
    done = subprocess.run(
        [sys.executable, "-m", "synthcodec", "complete", str(src), "-m", "fake:echo", "-o",
         str(tmp_path / "run"), "--executor", "ray", "--max-tokens-total", "100000000", "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["ok"] == ROWS
