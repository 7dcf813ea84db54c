"""The CodecLM loop's control flow on scripted fake models (no network, no real model).

The scripted world: the target answers HARD instructions badly and EASY ones as well as the
strong model; on FLIP instructions the strong model is the bad one. The judge prefers good
answers and adds +1 to whichever answer it sees first (position bias), which averaging the
two orders must cancel.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from synthcodec.codeclm import CodecConfig, generate
from synthcodec.commands.printing import say  # the stderr lines the command would print
from synthcodec.judging.check import silent
from synthcodec.llm import FakeBackend, PermanentError, Request
from synthcodec.llm.client import FatalModelError
from synthcodec.records import reason_of
from synthcodec.session import RunOptions
from tests.helpers import read_jsonl, write_jsonl

GOOD, BAD = "A careful, correct and complete answer.", "I do not know."
SEEDS = [
    {"id": "s1", "instruction": "Write a limerick about a cat."},
    {"id": "s2", "instruction": "Fix this Python loop that never ends."},
    {"id": "s3", "instruction": "Explain photosynthesis simply."},
]
ENCODED = {
    "limerick": {"use_case": "creative writing", "skills": ["poetry", "humor"]},
    "python": {"use_case": "code debugging", "skills": ["python"]},
    "photosynthesis": {"use_case": "science explanation", "skills": ["biology"]},
}
MARKERS = ["HARD", "EASY", "FLIP"]


def _words(key: str, n: int = 8) -> str:
    """Distinct pseudo-words per key, so unrelated instructions are never near-duplicates."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return " ".join("w" + digest[i:i + 6] for i in range(0, 6 * n, 6))


def _field(text: str, label: str) -> str:
    return re.search(rf"^{label}: (.*)$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]


def _fenced(text: str, label: str) -> str:
    match = re.search(rf"<<<BEGIN (DATA-\w+) {label}>>>\n(.*?)\n<<<END \1 {label}>>>", text, re.DOTALL)
    assert match, f"no {label} block in judge prompt"
    return match.group(2)


def strong_model(request: Request) -> str:
    prompt = request.messages[-1]["content"]
    if request.json_schema is not None:  # encode
        seed = _field(prompt.rsplit("\n\n", 1)[-1], "Instruction")
        key = next(k for k in ENCODED if k in seed.lower())
        return json.dumps(ENCODED[key])
    if prompt.startswith("You are an instruction writer"):
        n = int(re.search(r"Write (\d+) diverse", prompt).group(1))  # type: ignore[union-attr]
        use_case = _field(prompt, "Use case")
        skills = _field(prompt, "Skills they must require")
        return "Here you go:\n" + "\n".join(
            f"{k + 1}. {MARKERS[k % 3]} {_words(use_case + skills + str(k))}" for k in range(n))
    if prompt.startswith("You are an expert who judges"):
        return ("Rubrics:\n1. Depth\n2. Constraints\n3. Breadth\n4. Rigor\nActions:\n"
                "1. Add a depth requirement.\n2. Add a constraint.\n3. Widen the scope.\n"
                "4. Demand a proof.")
    if prompt.startswith("Rewrite the instruction"):
        instruction = prompt.rsplit("Instruction: ", 1)[1]
        return f"New instruction: {instruction} {_words(instruction, 1)}"
    if "[Assistant 1's Answer]" in prompt:
        first, second = _fenced(prompt, "ASSISTANT 1 ANSWER"), _fenced(prompt, "ASSISTANT 2 ANSWER")
        s1, s2 = (9 if first == GOOD else 2) + 1, (9 if second == GOOD else 2)
        return f"{s1} {s2}\nAssistant 1 was shown first."
    # An answer: the instruction is the whole user turn.
    return BAD if prompt.startswith("FLIP") else GOOD


def target_model(request: Request) -> str:
    prompt = request.messages[-1]["content"]
    return BAD if prompt.startswith("HARD") else GOOD


def _generate(tmp_path: Path, strong: FakeBackend, target: FakeBackend, *, n: int = 100,
              run: str = "run", cache: Path | None = None, concurrency: int | None = None,
              say: Any = silent, **cfg: Any):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    options = RunOptions(progress=False, cache_path=str(cache or tmp_path / "cache.sqlite"),
                         concurrency=concurrency)
    config = CodecConfig(**{"pool_size": 3, "per_metadata": 3, **cfg})
    return generate(seeds=str(seeds), run_dir=tmp_path / run, strong="fake:strong",
                    target="fake:target", n=n, cfg=config, options=options,
                    backends={"strong": strong, "target": target}, say=say)


def test_keeps_exactly_what_the_target_is_bad_at(tmp_path: Path) -> None:
    result = _generate(tmp_path, FakeBackend(strong_model, name="strong"),
                       FakeBackend(target_model, name="target"))
    pairs = read_jsonl(tmp_path / "run" / "output.jsonl")
    rejected = read_jsonl(tmp_path / "run" / "rejected.jsonl")
    instructions = read_jsonl(tmp_path / "run" / "instructions.jsonl")
    hard = {r["id"] for r in instructions if r["instruction"].startswith("HARD")}
    flip = {r["id"] for r in instructions if r["instruction"].startswith("FLIP")}
    easy = {r["id"] for r in instructions if r["instruction"].startswith("EASY")}
    assert len(hard) == len(flip) == len(easy) == 3

    assert {p["id"] for p in pairs} == hard | flip
    for p in pairs:
        assert p["iteration"] == 1 and p["action"] is None and p["history"] == []
        if p["id"] in hard:  # +1 bias to whoever is first cancels: 9.5 vs 2.5 both orders
            assert p["scores"] == {"strong_first": {"strong": 10, "target": 2},
                                   "target_first": {"strong": 9, "target": 3}}
            assert (p["strong_score"], p["target_score"], p["gap"]) == (9.5, 2.5, 7.0)
            assert p["decision"] == "keep_strong" and p["response"] == GOOD
        else:  # the target much better: keep its answer
            assert p["gap"] == -7.0 and p["decision"] == "keep_target"
            assert p["response"] == p["target_answer"] == GOOD
        assert p["seed_ids"] and p["use_case"] and p["skills"] and p["metadata_id"]

    assert {r["id"] for r in rejected} == easy
    for r in rejected:
        assert r["decision"] == "unresolved" and reason_of(r).startswith("unresolved")
        # the envelope of every run: the record's id and position in its input
        # (instructions.jsonl), as the journal and rejects/ have them
        position = [row["id"] for row in instructions].index(r["id"])
        assert r["_synthcodec"]["index"] == position and r["_synthcodec"]["status"] == "rejected"
        assert r["_synthcodec"]["id"].startswith(f"{position:07d}-")
        assert r["iteration"] == 4 and len(r["history"]) == 3
        assert [h["iteration"] for h in r["history"]] == [1, 2, 3]
        assert all(h["gap"] == 0.0 for h in r["history"]) and r["gap"] == 0.0
        assert r["action"] in {"Add a depth requirement.", "Add a constraint.",
                               "Widen the scope.", "Demand a proof."}
        assert r["instruction"] != r["base_instruction"]  # rewritten three times

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["kept"], summary["unresolved"], summary["rejected"]) == (6, 3, 0)
    assert summary["kept_by_iteration"] == {"1": 6}
    assert summary["stop"] == "exhausted"
    assert summary["metadata_coverage"]["share"] == 1.0
    assert summary["warnings"] == []
    assert (tmp_path / "run" / "gap_histogram.png").stat().st_size > 0
    assert result.report is not None and result.report["stop"] == "exhausted"
    # The judge check first (the seeds have no responses: the packaged probes). This judge
    # gives whoever is shown first one point more: it flips nothing where it sees a real
    # difference, yet ties nothing either (identical answers 3 vs 2).
    card = json.loads((tmp_path / "run" / "judge_card.json").read_text())
    assert summary["judge_check"]["line"] == card["line"]
    assert card["probes"]["identical"]["rate"] == 0.0 and card["verdict"] != "usable"
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    # 2 rows x (3 pairs in both orders + 1 identical pair, whose two orders are one request)
    assert stages["judge_check"]["stats"]["requests"] == 14


def test_stops_once_n_pairs_are_kept(tmp_path: Path) -> None:
    # One record in flight, so the stop is seen before any later candidate starts.
    target = FakeBackend(target_model)
    result = _generate(tmp_path, FakeBackend(strong_model), target, n=2, concurrency=1)
    pairs = read_jsonl(tmp_path / "run" / "output.jsonl")
    # The first two candidates in input order are HARD ones, kept in their first iteration.
    assert [(p["id"], p["decision"], p["gap"], p["response"]) for p in pairs] == [
        ("m0000-i0", "keep_strong", 7.0, GOOD), ("m0001-i0", "keep_strong", 7.0, GOOD)]
    assert result.report is not None and result.report["stop"] == "reached"
    assert (result.report["kept"], result.report["unresolved"]) == (2, 0)
    # Stopped, not run to the end and cut: no candidate was given up as "unresolved", and
    # the target answered only the two kept instructions.
    assert read_jsonl(tmp_path / "run" / "rejected.jsonl") == []
    assert [r.messages[-1]["content"] for r in target.calls] == [p["instruction"] for p in pairs]


def test_improve_action_is_seeded_and_recorded(tmp_path: Path) -> None:
    strong = FakeBackend(strong_model)
    _generate(tmp_path, strong, FakeBackend(target_model), run="a")
    _generate(tmp_path, FakeBackend(strong_model), FakeBackend(target_model), run="b")
    a = read_jsonl(tmp_path / "a" / "rejected.jsonl")
    b = read_jsonl(tmp_path / "b" / "rejected.jsonl")
    actions = [[h["action"] for h in r["history"]] + [r["action"]] for r in a]
    assert actions == [[h["action"] for h in r["history"]] + [r["action"]] for r in b]
    # Recorded: the first try has no action, each rewrite one of the rubric's actions, and
    # the instruction judged after a rewrite is the strong model's rewrite with that action.
    rubric = {"Add a depth requirement.", "Add a constraint.", "Widen the scope.",
              "Demand a proof."}
    assert len(actions) == 3
    rewrites = [c.messages[-1]["content"] for c in strong.calls
                if c.messages[-1]["content"].startswith("Rewrite the instruction")]
    for r, acts in zip(a, actions):
        assert acts[0] is None and len(acts) == 4 and set(acts[1:]) <= rubric
        for before, after in zip(r["history"], r["history"][1:] + [r]):
            assert after["instruction"].startswith(before["instruction"] + " w")
            # the strong model was asked for this rewrite with this action
            assert any(after["action"] in text and
                       text.endswith("Instruction: " + before["instruction"]) for text in rewrites)


def test_resume_in_the_middle_of_an_improve_round(tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache.sqlite"
    sent: list[int] = []

    def failing_target(request: Request) -> Any:
        sent.append(1)
        if len(sent) > 12:  # 9 base answers, then 3 answers to rewrites: mid round 2
            return PermanentError("401 unauthorized", status=401)
        return target_model(request)

    strong1 = FakeBackend(strong_model)
    target1 = FakeBackend(failing_target)
    with pytest.raises(FatalModelError):
        _generate(tmp_path, strong1, target1, cache=cache)
    assert any(r.messages[-1]["content"].startswith("Rewrite") for r in strong1.calls)

    strong2, target2 = FakeBackend(strong_model), FakeBackend(target_model)
    _generate(tmp_path, strong2, target2, cache=cache)

    def keys(calls: list[Request]) -> set[str]:
        return {json.dumps(r.canonical(), sort_keys=True) for r in calls}

    answered_before = keys(target1.calls[:12])
    assert not keys(strong2.calls) & keys(strong1.calls), "cached strong requests were re-sent"
    assert not keys(target2.calls) & answered_before, "cached target requests were re-sent"
    pairs = read_jsonl(tmp_path / "run" / "output.jsonl")
    rejected = read_jsonl(tmp_path / "run" / "rejected.jsonl")
    assert len(pairs) == len({p["id"] for p in pairs}) == 6
    assert len(rejected) == len({r["id"] for r in rejected}) == 3

    # The same run again: everything is journaled, nothing is sent.
    strong3, target3 = FakeBackend(strong_model), FakeBackend(target_model)
    _generate(tmp_path, strong3, target3, cache=cache)
    assert strong3.calls == [] and target3.calls == []


def test_same_model_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    fake = FakeBackend(strong_model)
    result = generate(seeds=str(seeds), run_dir=tmp_path / "run", strong="fake:x",
                      target="fake:x", n=5, cfg=CodecConfig(pool_size=3, per_metadata=1),
                      options=RunOptions(progress=False, cache_path=str(tmp_path / "c.sqlite")),
                      backends={"strong": fake, "target": fake}, say=say)
    assert result.report is not None
    assert "same model" in result.report["warnings"][0]
    assert "WARNING: strong and target are the same model" in capsys.readouterr().err


def test_unreadable_judge_fails_the_record_and_the_run_still_ends(tmp_path: Path) -> None:
    def mumbling_judge(request: Request) -> str:
        prompt = request.messages[-1]["content"]
        if "[Assistant 1's Answer]" in prompt or "could not be read" in prompt:
            return "Both answers are fine."
        return strong_model(request)

    result = _generate(tmp_path, FakeBackend(mumbling_judge), FakeBackend(target_model), n=3)
    assert result.report is not None and result.report["stop"] == "exhausted"
    assert read_jsonl(tmp_path / "run" / "rejected.jsonl") == []
    failed = read_jsonl(tmp_path / "run" / "failed.jsonl")
    # n=3 x oversample 2 at 3 per entry: 2 of the 3 entries drawn; failures draw no more.
    assert len(failed) == 6 and all(r["_synthcodec"]["status"] == "failed" for r in failed)
    assert all("judge gave no readable pair of scores" in reason_of(r) for r in failed)
    assert all(r["metadata_id"] and r["seed_ids"] for r in failed)


def test_judge_json_mode_gives_the_same_pairs(tmp_path: Path) -> None:
    """--judge-json: every judgement carries the pair schema; the JSON scores decide alike."""
    from synthcodec.judging.pairwise import pair_schema

    judged: list[Request] = []

    def json_strong(request: Request) -> str:
        if request.json_schema is not None and "score_1" in request.json_schema["properties"]:
            judged.append(request)
            text = strong_model(replace(request, json_schema=None))
            s1, s2 = text.split("\n", 1)[0].split()
            return json.dumps({"score_1": int(s1), "score_2": int(s2), "explanation": "x"})
        assert "[Assistant 1's Answer]" not in request.messages[-1]["content"]  # no text judging
        return strong_model(request)

    _generate(tmp_path, FakeBackend(json_strong), FakeBackend(target_model), run="j",
              judge_json=True)
    _generate(tmp_path, FakeBackend(strong_model), FakeBackend(target_model), run="t")
    assert judged and all(r.json_schema == pair_schema() for r in judged)
    pairs_j = read_jsonl(tmp_path / "j" / "output.jsonl")
    pairs_t = read_jsonl(tmp_path / "t" / "output.jsonl")
    assert [(p["id"], p["gap"], p["decision"]) for p in pairs_j] == \
        [(p["id"], p["gap"], p["decision"]) for p in pairs_t]
    stages = json.loads((tmp_path / "j" / "stages.json").read_text())
    assert stages["loop"]["config"]["judge_answer"] == "json"
    stages = json.loads((tmp_path / "t" / "stages.json").read_text())
    assert stages["loop"]["config"]["judge_answer"] == "text"  # auto, for a non-llama.cpp judge


def test_a_run_that_keeps_nothing_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def even_judge(request: Request) -> str:  # every pair scored equal: every gap is 0
        if "[Assistant 1's Answer]" in request.messages[-1]["content"]:
            return "6 6\nSame."
        return strong_model(request)

    result = _generate(tmp_path, FakeBackend(even_judge), FakeBackend(target_model), n=3,
                       max_iterations=1, say=say)
    assert result.report is not None and result.report["kept"] == 0
    err = capsys.readouterr().err
    assert f"no pair kept: all {result.report['judged']} judged gaps were within ±3" in err


def test_budget_stops_generate_and_a_larger_one_finishes_with_the_same_pairs(
        tmp_path: Path) -> None:
    """Dollars per stage and per kept pair; a budget stop (exit code 4) loses nothing."""
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    config = CodecConfig(pool_size=3, per_metadata=3)
    prices = ("strong=1000,2000", "target=100,100")

    def run(name: str, budget: float | None) -> Any:
        options = RunOptions(progress=False, no_cache=True, price=prices, budget=budget)
        return generate(seeds=str(seeds), run_dir=tmp_path / name, strong="fake:strong",
                        target="fake:target", n=100, cfg=config, options=options,
                        judge_check=0,  # the budget here is for the pairs alone
                        backends={"strong": FakeBackend(strong_model),
                                  "target": FakeBackend(target_model)})

    whole = run("whole", None)
    assert whole.exit_code == 0 and whole.report is not None
    cost = whole.report["cost"]
    assert cost["usd"] > 0 and set(cost["usd_by_stage"]) >= {"encode", "decode", "loop"}
    assert cost["usd_per_kept_pair"] == pytest.approx(cost["usd"] / whole.report["kept"],
                                                      rel=1e-3)
    budget = cost["usd"] * 0.4
    stopped = run("split", budget)
    assert stopped.exit_code == 4 and stopped.report is None
    state = json.loads((tmp_path / "split" / "stages.json").read_text())
    spent = sum(e.get("stats", {}).get("usd", 0) for k, e in state.items()
                if not k.startswith("_"))
    assert 0 < spent <= budget
    finished = run("split", cost["usd"] * 2)
    assert finished.exit_code == 0 and finished.report is not None
    strip = lambda rows: [{k: v for k, v in r.items() if k != "_synthcodec"} for r in rows]  # noqa: E731
    assert strip(read_jsonl(tmp_path / "split" / "output.jsonl")) == strip(
        read_jsonl(tmp_path / "whole" / "output.jsonl"))
    assert finished.report["cost"]["usd"] == pytest.approx(cost["usd"], rel=1e-6)


def test_files_after_n_pairs_hold_nothing_that_ran_only_by_timing(tmp_path: Path) -> None:
    """Once n pairs are kept, instructions after the n-th kept one in input order ran only
    because they were in flight: they are left out of every file, so the files depend on the
    input alone (the same under any executor and any timing)."""
    from synthcodec.codeclm.loop import collect, on_base
    from synthcodec.executors import Item
    from synthcodec.store import RunDir

    texts = {"a": "Write a haiku about autumn leaves.", "b": "Explain binary search.",
             "c": "List three uses of vinegar at home.", "d": "Translate hello to French.",
             "e": "Summarize the plot of Hamlet.", "f": "Compute 17 times 23 step by step."}

    def pair(i: str) -> dict[str, Any]:
        return {"id": i, "instruction": texts[i]}

    base = {k: Item(f"rec-{k}", i, pair(k)) for i, k in enumerate("abcdef")}
    kept = [pair("a"), pair("c"), pair("f")]
    dropped = [on_base(pair("b"), base, "rejected", "unresolved"),
               on_base(pair("d"), base, "rejected", "unresolved"),
               on_base(pair("e"), base, "failed", "judge gave no readable pair of scores")]
    (tmp_path / "run").mkdir()
    run = RunDir(tmp_path / "run")
    got, _ = collect(run, kept, dropped, 0.7, base, n=2)
    assert got.counts == {"ok": 2, "rejected": 1, "failed": 0}
    assert [r["id"] for r in read_jsonl(tmp_path / "run" / "output.jsonl")] == ["a", "c"]
    rejected = read_jsonl(tmp_path / "run" / "rejected.jsonl")
    assert [r["id"] for r in rejected] == ["b"]
    # the envelope of every run: the base instruction's record id and position
    assert rejected[0]["_synthcodec"] == {"id": "rec-b", "index": 1, "status": "rejected",
                                          "reason": "unresolved"}
    assert read_jsonl(tmp_path / "run" / "failed.jsonl") == []
    got, _ = collect(run, kept, dropped, 0.7, base, n=None)  # exhausted: all
    assert got.counts == {"ok": 3, "rejected": 2, "failed": 1}


def _decoded_entries(strong: FakeBackend) -> list[str]:
    """The metadata entries the strong model was asked to decode, in order."""
    return [_field(r.messages[-1]["content"], "Use case") + " | "
            + _field(r.messages[-1]["content"], "Skills they must require")
            for r in strong.calls
            if r.messages[-1]["content"].startswith("You are an instruction writer")]


def test_small_n_decodes_only_the_pool_entries_it_needs(tmp_path: Path) -> None:
    strong, target = FakeBackend(strong_model), FakeBackend(target_model)
    _generate(tmp_path, strong, target, n=1, pool_size=9, per_metadata=1)
    metadata = read_jsonl(tmp_path / "run" / "metadata.jsonl")
    assert len(metadata) == 9
    # n x oversample (2) base instructions at one per entry: two entries, not nine.
    assert len(_decoded_entries(strong)) == 2
    rubric_calls = [r for r in strong.calls
                    if r.messages[-1]["content"].startswith("You are an expert who judges")]
    assert len(rubric_calls) == 2
    assert len(read_jsonl(tmp_path / "run" / "output.jsonl")) == 1


def test_a_dry_loop_draws_more_of_the_pool_once_each(tmp_path: Path) -> None:
    strong = FakeBackend(strong_model)
    target = FakeBackend(lambda r: GOOD)  # as good as the strong model: nothing is kept
    _generate(tmp_path, strong, target, n=1, pool_size=9, per_metadata=1, max_iterations=1)
    decoded = _decoded_entries(strong)
    assert len(decoded) == len(set(decoded)) == 9  # 2, then 2 more, 4 more, the last 1
    assert read_jsonl(tmp_path / "run" / "output.jsonl") == []
    assert len(read_jsonl(tmp_path / "run" / "rejected.jsonl")) == 9
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop"] == "exhausted"


def test_no_seed_encoded_is_every_record_failed_not_bad_input(tmp_path: Path) -> None:
    from synthcodec.errors import EveryRecordFailed

    with pytest.raises(EveryRecordFailed, match="no seed was encoded") as info:
        _generate(tmp_path, FakeBackend(["not json at all"]), FakeBackend(target_model), n=1)
    assert info.value.exit_code == 1  # the README's "every record failed", not 2 (bad input)
    assert (tmp_path / "run" / "rejects" / "encode.jsonl").exists()


def test_drawing_more_keeps_earlier_instructions_in_place(tmp_path: Path) -> None:
    """Two instructions per entry: the entries drawn later are appended to instructions.jsonl
    (round-robin within each draw), so the loop's journaled records keep their ids and no
    instruction is judged twice or published twice."""
    strong = FakeBackend(strong_model)
    target = FakeBackend(lambda r: GOOD)  # nothing is kept: every draw runs dry
    _generate(tmp_path, strong, target, n=2, pool_size=9, per_metadata=2, max_iterations=1)
    assert len(_decoded_entries(strong)) == 9  # draws of 2, 2 more, 4 more, 1 more
    rejected = read_jsonl(tmp_path / "run" / "rejected.jsonl")
    ids = [r["id"] for r in rejected]
    assert len(ids) == len(set(ids)) == 18  # each of the 9 x 2 instructions once
    judged = Counter(_fenced(r.messages[-1]["content"], "QUESTION") for r in strong.calls
                     if "[Assistant 1's Answer]" in r.messages[-1]["content"])
    # Every instruction judged, none again in a later pass (at most its two orders; equal
    # answers make both orders one request, which the cache may answer).
    ours = {r["instruction"] for r in rejected}  # not the judge check's probe questions
    assert set(judged) >= ours and max(judged[q] for q in ours) <= 2
