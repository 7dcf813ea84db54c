"""The viewer's index at scale: a finished `rate`-shaped run of N rows (default 100,000),
written directly (no model), then: index build time, and page times for the first page,
a deep page, a status filter, a score range, and a full-text search, through the app.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_viewer.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

WORDS = ("explain write list compare summarize translate python poem recipe history physics "
         "budget email story proof riddle").split()


def make_run(root: Path, n: int) -> Path:
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"stage": "rate", "models": {"judge": "m"}}))
    rnd = random.Random(0)
    with open(run / "output.jsonl", "w") as out, open(run / "failed.jsonl", "w") as failed:
        for i in range(n):
            words = " ".join(rnd.choice(WORDS) for _ in range(12))
            row = {"instruction": f"Task {i}: {words}", "input": "", "output": words * 3,
                   "_synthcodec": {"id": f"{i:07d}", "index": i}}
            if i % 50 == 49:
                row["_synthcodec"].update(status="failed", reason="no readable rating")
                failed.write(json.dumps(row) + "\n")
            else:
                row.update(score=rnd.choice([1, 2, 3, 4, 4.5, 5]), explanation="ok",
                           judge_text="Score: 4\nok")
                out.write(json.dumps(row) + "\n")
    (run / "manifest.json").write_text(json.dumps({"status": "complete", "stage": "rate"}))
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    from starlette.testclient import TestClient

    from synthcodec.viewer.app import Viewer
    from synthcodec.viewer.index import Filters

    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), args.rows)
        started = time.perf_counter()
        viewer = Viewer(run)
        build = time.perf_counter() - started
        client = TestClient(viewer.app, base_url="http://127.0.0.1")
        print(f"{args.rows} rows: index built in {build:.2f} s "
              f"(file -> in-memory SQLite + FTS5)")
        cases = {"first page": "/", "page 1000": "/?page=1000",
                 "status=failed": "/?status=failed", "score 4..4.5, page 50":
                 "/?score_min=4&score_max=4.5&page=50", "search 'python proof'":
                 "/?q=python+proof", "search + filter + deep page":
                 "/?q=recipe&status=kept&score_min=4.5&page=200",
                 "row panel": f"/row/{args.rows // 2}"}
        print(f"{'request':32} {'median ms':>10} {'query ms':>9}")
        for name, url in cases.items():
            times, query = [], []
            for _ in range(7):
                t = time.perf_counter()
                r = client.get(url)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (url, r.status_code)
                if "/row/" not in url:
                    f = Filters.from_query(dict(parse_qsl(urlparse(url).query)))
                    query.append(viewer.index.page(f).seconds * 1000)
            q = f"{statistics.median(query):9.1f}" if query else f"{'':9}"
            print(f"{name:32} {statistics.median(times):10.1f} {q}")


if __name__ == "__main__":
    main()
