"""Small finished runs made on fake backends: a `generate` (the scripted strong/target world
of tests/unit/test_codeclm_loop.py), a `compare` and a `rate`. Used by the viewer and push
tests; `python -m tests.viewer.sample_runs DIR` writes them for a look by hand."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from synthcodec.llm import FakeBackend, Request
from tests.helpers import write_jsonl
from tests.unit.test_codeclm_loop import SEEDS, strong_model, target_model

XSS = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"


def _strong_with_markup(request: Request) -> str:
    """The scripted strong model, but the first instruction it decodes for the creative
    writing entry carries markup (an XSS probe in a row's instruction)."""
    reply = strong_model(request)
    prompt = request.messages[-1]["content"]
    if prompt.startswith("You are an instruction writer") and "creative writing" in prompt:
        lines = reply.split("\n")
        lines[1] = lines[1] + " " + XSS
        reply = "\n".join(lines)
    return reply


def make_generate(root: Path, name: str = "gen", *, xss: bool = True, **codec: Any) -> Path:
    from synthcodec import api

    seeds = list(SEEDS)
    if xss:  # a seed whose text carries markup: every page must show it as text
        seeds = [dict(seeds[0], instruction=seeds[0]["instruction"] + " " + XSS), *seeds[1:]]
    path = write_jsonl(root / f"{name}-seeds.jsonl", seeds)
    run = root / name
    api.generate(str(path), strong="fake:strong", target="fake:target", n=100, run_dir=run,
                 backends={"strong": FakeBackend(_strong_with_markup if xss else strong_model,
                                                 name="strong"),
                           "target": FakeBackend(target_model, name="target")},
                 codec={"pool_size": 3, "per_metadata": 3, **codec},
                 progress=False, cache_path=str(root / "cache.sqlite"))
    return run


def _judge(request: Request) -> str:
    text = request.messages[-1]["content"]
    first = text.find("GOOD")
    second = text.find("meh")
    if "tie" in text:
        return "6 6\nBoth are alike."
    return ("8 4" if 0 <= first < second else "4 8") + "\nThe GOOD answer is more helpful."


def make_compare(root: Path, name: str = "cmp",
                 categories: tuple[str, ...] = ("writing", "coding", "math")) -> Path:
    from synthcodec import api

    qs = [{"question_id": i, "question": f"Question {i}: " + ("tie" if i % 3 == 0 else "explain"),
           "category": categories[i % len(categories)]} for i in range(9)]
    a = write_jsonl(root / f"{name}-a.jsonl", [dict(q, answer=f"GOOD answer {q['question_id']}")
                                               for q in qs])
    b = write_jsonl(root / f"{name}-b.jsonl", [dict(q, answer="meh") for q in qs])
    run = root / name
    api.compare(a, b, judge="fake:judge", run_dir=run, backend=FakeBackend(_judge, name="judge"),
                progress=False, cache_path=str(root / "cache.sqlite"))
    return run


def _rater(request: Request) -> str:
    text = request.messages[-1]["content"]
    if "unreadable" in text:
        return "no idea"
    score = 5 if "great" in text else 4 if "fine" in text else 2
    return f"Score: {score}\nThe response is {'accurate' if score > 3 else 'weak'}."


def make_rate(root: Path, name: str = "rate") -> Path:
    from synthcodec import api

    rows = [{"instruction": f"Task {i}", "input": "", "output": ["great", "fine", "poor",
                                                                 "unreadable"][i % 4] + f" {i}"}
            for i in range(8)]
    path = write_jsonl(root / f"{name}-in.jsonl", rows)
    run = root / name
    api.rate(path, judge="fake:rater", run_dir=run, backend=FakeBackend(_rater, name="rater"),
             reasks=0, progress=False, cache_path=str(root / "cache.sqlite"))
    return run


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for make in (make_generate, make_compare, make_rate):
        print(make(out))
