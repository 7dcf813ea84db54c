"""Small helpers shared by tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def synthcodec(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
               **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess, as a user would (`env`: variables set over ours)."""
    return subprocess.run([sys.executable, "-m", "synthcodec", *args], capture_output=True,
                          text=True, timeout=timeout, env={**cli_env(), **(env or {})}, **kw)


def popen_synthcodec(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "synthcodec", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), **kw)


def cli(*args: str) -> int:
    """Run the CLI in-process, as `synthcodec ARGS` would; its exit code."""
    from synthcodec.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def recipe_head(tmp_path: Path, pool: list[dict[str, Any]], questions: list[dict[str, Any]],
                *, experiment: str = "", rate: str = "") -> tuple[str, Path]:
    """The start of an experiment recipe on scripted models, with its pool and benchmark
    questions written under `tmp_path`: [experiment] (dir, base local, judge fake:echo, then
    the `experiment` lines) and [experiment.rate] over the pool (then the `rate` lines).
    Returns (that text, the questions' file for [experiment.bench])."""
    data = tmp_path / "pool.json"
    data.write_text(json.dumps(pool))
    bench = write_jsonl(tmp_path / "vicuna.jsonl", questions)
    text = (f'\n[experiment]\ndir = "{tmp_path / "exp"}"\nbase = "local"\njudge = "fake:echo"\n'
            f'{experiment}\n[experiment.rate]\ndata = "{data}"\n{rate}')
    return text, bench
