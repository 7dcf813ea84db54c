"""The judge check: probes, and cards whose numbers match scripted judges' known biases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from synthcodec.errors import UserError
from synthcodec.judging.check import read_card, run_check, write_card
from synthcodec.judging.check.probes import FILLERS, Sample, build_probes, first_third, padded
from synthcodec.judging.outcomes import order_result
from synthcodec.judging.pairwise import JudgeSettings, pair_request
from synthcodec.llm.client import LLMClient
from synthcodec.stages.rate import Rater, rating_template
from tests import judge_fakes as fakes
from tests.helpers import write_jsonl

RESPONSES = [
    "Paris is the capital of France and its largest city by far.",
    "Water boils at one hundred degrees Celsius at sea level pressure.",
    "A haiku has three lines of five, seven and five syllables, usually about nature.",
    "Use a list comprehension: squares = [x * x for x in range(10)] gives the first ten.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in plants.",
    "The mitochondrion makes most of a cell's energy as ATP through respiration.",
    "Shakespeare wrote Hamlet around 1600; it follows a Danish prince seeking revenge for "
    "his father's murder.",
    "Two plus two is four.",  # too short to cut: never probed
    "The Pacific is the largest and deepest ocean, covering about a third of the surface.",
]
SAMPLES = [Sample(f"line {i + 1}", f"Question number {i + 1}?", "", r, id=str(i + 1))
           for i, r in enumerate(RESPONSES)]
PER_KIND = 4
ELIGIBLE = [s for s in SAMPLES if len(s.response.split()) >= 6]  # 8 of them
CHOSEN = [ELIGIBLE[8 * k // PER_KIND] for k in range(PER_KIND)]  # rows 0, 2, 4, 6


def check(backend, role: str = "pairwise", samples=SAMPLES, **kw):  # type: ignore[no-untyped-def]
    client = LLMClient(backend)
    lines: list[str] = []
    if role == "rater":
        rater = Rater(client, rating_template(None), dimension="accuracy", json_mode=False,
                      reasks=0, max_tokens=64)
        card = asyncio.run(run_check(samples, PER_KIND, judge=backend.identity, data="rows",
                                     rater=rater, say=lines.append, **kw))
    else:
        card = asyncio.run(run_check(samples, PER_KIND, judge=backend.identity, data="rows",
                                     client=client, settings=JudgeSettings(json=False, reasks=0),
                                     say=lines.append, **kw))
    return card, lines, backend


def numbers(card, kind: str) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    s = card.probes[kind]
    return s.n, s.right, s.tie, s.wrong


# ---------------------------------------------------------------------- probes

def test_probes_are_known_transformations_of_the_data() -> None:
    probes = build_probes(SAMPLES, PER_KIND)
    assert len(probes) == 5 * PER_KIND
    by_kind = {k: [p for p in probes if p.kind == k] for k in
               ("swap", "wrong_question", "cut_short", "padding", "identical")}
    assert [p.first for p in by_kind["cut_short"]] == [s.response for s in CHOSEN]
    for p in by_kind["cut_short"]:
        words = p.first.split()
        assert p.second.split() == words[: len(words) // 3]
    for k, p in enumerate(by_kind["padding"]):
        assert p.second == p.first + "\n\n" + FILLERS[k % 3]
    for p in by_kind["wrong_question"]:
        assert p.second != p.first and p.second in RESPONSES
        assert p.question == next(s.question for s in SAMPLES if s.response == p.first)
    assert all(p.first == p.second for p in by_kind["identical"])
    # one-response data: swap pairs are the wrong-question pairs (the same requests)
    assert [(p.first, p.second) for p in by_kind["swap"]] == \
        [(p.first, p.second) for p in by_kind["wrong_question"]]
    assert first_third("one two three four five six seven") == "one two"
    assert padded("x ", 4) == "x\n\n" + FILLERS[1]


def test_compare_data_swaps_the_real_pair() -> None:
    samples = [Sample(s.key, s.instruction, "", s.response, other=s.response.upper())
               for s in SAMPLES]
    swap = [p for p in build_probes(samples, 2) if p.kind == "swap"]
    assert [(p.first, p.second) for p in swap] == [(s.response, s.response.upper())
                                                  for s in (ELIGIBLE[0], ELIGIBLE[4])]


def test_too_little_data_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="at least two different responses"):
        build_probes(SAMPLES[7:8] + SAMPLES[:1], 3)


# ---------------------------------------------------------------------- pairwise cards

def test_always_first_is_noise_with_exact_numbers() -> None:
    card, lines, backend = check(fakes.always_first())
    n = PER_KIND
    assert numbers(card, "swap") == (n, 0, 0, n)  # every verdict flips
    for kind in ("wrong_question", "cut_short", "padding"):
        assert numbers(card, kind) == (2 * n, n, 0, n)  # right shown first, wrong shown second
    assert numbers(card, "identical") == (2 * n, 0, 0, 2 * n)
    assert card.probes["wrong_question"].rate == 0.5 and card.probes["padding"].rate == 0.5
    assert card.first_shown_wins == (2 * 4 * n, 2 * 4 * n)  # 4 distinct pairs per row
    assert card.verdict == "noise"
    assert card.line().startswith(f"judge {backend.identity}: noise — flips 100% of swapped pairs")
    # swap and wrong question share their requests: each distinct request is sent once
    assert len(backend.calls) == 2 * 4 * n == card.requests["sent"]
    assert lines == [f"judge check: {2 * 4 * n} requests to fake:first (0 cached), about "
                     f"{lines[0].split('about ')[1].split(' tokens')[0]} tokens in and at most "
                     f"{2 * 4 * n * 512 / 1000:.1f}k out, price unknown"]


def test_prefers_longer_is_weak_padding_fails() -> None:
    card, _, _ = check(fakes.prefers_longer())
    n = PER_KIND
    wrong_pairs = [p for p in build_probes(SAMPLES, n) if p.kind == "wrong_question"]
    longer = sum(len(p.first) > len(p.second) for p in wrong_pairs)
    shorter = sum(len(p.first) < len(p.second) for p in wrong_pairs)
    assert numbers(card, "wrong_question") == (2 * n, 2 * longer, 2 * (n - longer - shorter),
                                               2 * shorter)
    assert numbers(card, "cut_short") == (2 * n, 2 * n, 0, 0)
    assert numbers(card, "padding") == (2 * n, 0, 0, 2 * n)
    assert numbers(card, "identical") == (2 * n, 0, 2 * n, 0)
    assert numbers(card, "swap") == (n, n, 0, 0)
    assert card.verdict == "weak"
    assert "prefers an answer padded with filler 100% of the time" in card.line()


def test_random_judge_is_noise_and_its_card_matches_its_replies() -> None:
    card, _, _ = check(fakes.random_judge())
    settings = JudgeSettings(json=False)
    expected: dict[str, list[int]] = {}
    for p in build_probes(SAMPLES, PER_KIND):
        s1 = fakes.random_pair_scores(pair_request(settings, p.question, p.first, p.second,
                                                   json_mode=False))
        s2 = fakes.random_pair_scores(pair_request(settings, p.question, p.second, p.first,
                                                   json_mode=False))
        r1, r2 = order_result(s1[0], s1[1]), order_result(s2[1], s2[0])
        got = expected.setdefault(p.kind, [0, 0, 0])
        results = [("win" if r1 == r2 else "lose")] if p.kind == "swap" else [r1, r2]
        for r in results:
            if p.kind == "identical" and r != "tie":
                r = "lose"
            got[{"win": 0, "tie": 1, "lose": 2}[r]] += 1
    for kind, (right, tie, wrong) in expected.items():
        assert numbers(card, kind)[1:] == (right, tie, wrong), kind
    assert card.verdict == "noise"


def test_good_judge_is_usable() -> None:
    real = {s.question: s.response for s in SAMPLES}
    card, _, _ = check(fakes.good_judge(real))
    n = PER_KIND
    for kind in ("wrong_question", "cut_short", "padding"):
        assert numbers(card, kind) == (2 * n, 2 * n, 0, 0)
    assert numbers(card, "identical") == (2 * n, 0, 2 * n, 0)
    assert numbers(card, "swap") == (n, n, 0, 0)
    assert card.first_shown_wins == (3 * 2 * n // 2, 3 * 2 * n)  # no position bias
    assert card.verdict == "usable"
    assert card.line() == "judge fake:good: usable — passes every probe"
    d = card.as_dict()
    assert d["probes"]["cut_short"]["ci95"][1] == 1.0 and d["probes"]["cut_short"]["rate"] == 1


# ---------------------------------------------------------------------- rater cards

def test_constant_rater_is_noise_all_ties_one_score() -> None:
    card, _, backend = check(fakes.constant_rater(), "rater")
    n = PER_KIND
    for kind in ("wrong_question", "cut_short", "padding"):
        assert numbers(card, kind) == (n, 0, n, 0)
    assert card.spread is not None and card.spread.scores == [0.5] * n
    assert card.verdict == "noise"
    assert "gives 100% of answers the same score (0.5)" in card.line()
    # each distinct (instruction, answer) rated once: n real + 3 variants each
    assert len(backend.calls) == 4 * n


def test_longer_rater_fails_padding() -> None:
    card, _, _ = check(fakes.longer_rater(), "rater")
    assert numbers(card, "padding")[3] == PER_KIND  # the padded answer is longer: rated higher
    assert card.verdict in ("weak", "noise")
    assert "prefers an answer padded with filler 100% of the time" in card.line()


def test_random_rater_matches_its_replies() -> None:
    card, _, backend = check(fakes.random_rater(), "rater")
    scores = {fakes.rated(r): fakes.random_rater_score(r) for r in backend.calls}
    for kind in ("wrong_question", "cut_short", "padding"):
        right = tie = wrong = 0
        for p in build_probes(SAMPLES, PER_KIND, (kind,)):
            a, b = scores[(p.instruction, p.first)], scores[(p.instruction, p.second)]
            right, tie, wrong = right + (a > b), tie + (a == b), wrong + (a < b)
        assert numbers(card, kind) == (PER_KIND, right, tie, wrong)


def test_good_rater_is_usable() -> None:
    real = {s.instruction: (s.response, 3 + (i % 3)) for i, s in enumerate(SAMPLES)}
    card, _, _ = check(fakes.good_rater(real), "rater")
    for kind in ("wrong_question", "cut_short", "padding"):
        assert numbers(card, kind) == (PER_KIND, PER_KIND, 0, 0)
    assert sorted(card.spread.scores) == sorted(real[s.instruction][1] for s in CHOSEN)
    assert card.verdict == "usable"


# ---------------------------------------------------------------------- card files, labels

def test_card_files_round_trip(tmp_path: Path) -> None:
    card, _, _ = check(fakes.always_first())
    paths = write_card(card, tmp_path)
    assert [p.name for p in paths] == ["judge_card.json", "judge_card.md"]
    assert read_card(tmp_path) == json.loads(json.dumps(card.as_dict()))
    md = (tmp_path / "judge_card.md").read_text()
    assert "**noise**" in md and "| swap |" in md and "Verdict rules" in md


def test_labels_give_agreement_kappa_auc(tmp_path: Path) -> None:
    real = {s.question: s.response for s in SAMPLES}
    # compare data: A is the real answer, B another question's; humans prefer A on 3, B on 1
    samples = [Sample(s.key, s.instruction, "", s.response, other=SAMPLES[(i + 1) % 9].response,
                      id=s.id) for i, s in enumerate(SAMPLES)]
    labels = write_jsonl(tmp_path / "labels.jsonl", [
        {"id": "1", "preference": "a"}, {"id": "2", "preference": "a"},
        {"id": "3", "preference": "A"}, {"id": "4", "preference": "b"}])
    card, _, _ = check(fakes.good_judge(real), samples=samples, labels=labels)
    assert card.labels is not None
    assert card.labels["n"] == 4 and card.labels["agreement"] == 0.75
    assert card.labels["kappa"] == 0.0  # the judge always says a: no agreement beyond chance
    assert card.labels["auc"] == 0.5
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "preference": "maybe"}])
    with pytest.raises(UserError, match="bad.jsonl:1: field 'preference'"):
        check(fakes.good_judge(real), samples=samples, labels=bad)


# ---------------------------------------------------------------------- before the commands

def _rows_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "rows.jsonl", [{"instruction": s.instruction, "output": s.response}
                                                 for s in SAMPLES])


def test_rate_checks_its_judge_first_and_noise_keeps_exit_code_0(tmp_path: Path) -> None:
    from synthcodec.session import RunOptions
    from synthcodec.stages.rate import rate_file

    options = RunOptions(progress=False, cache_path=str(tmp_path / "cache.sqlite"))
    backend = fakes.constant_rater()
    summary = rate_file(_rows_file(tmp_path), tmp_path / "run", judge="fake:constant",
                        options=options, backends={"judge": backend}, judge_check=2)
    card = read_card(tmp_path / "run")
    assert card is not None and card["verdict"] == "noise" and card["role"] == "rater"
    assert summary.exit_code == 0 and summary.kept == len(SAMPLES)
    assert summary.lines()[0] == card["line"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["judge_check"]["verdict"] == "noise"
    # 2 probed rows: their real answer + 3 variants; the real ones the run then takes cached
    assert summary.stats.requests == 2 * 3 + len(SAMPLES) and summary.stats.cache_hits >= 2
    again = rate_file(_rows_file(tmp_path), tmp_path / "run", judge="fake:constant",
                      options=options, backends={"judge": backend}, judge_check=2)
    assert again.stats.requests == 0  # the check is cached like every request


def test_a_resumed_run_keeps_its_card_and_sends_no_check(tmp_path: Path) -> None:
    from synthcodec.session import RunOptions
    from synthcodec.stages.rate import rate_file

    options = RunOptions(progress=False, no_cache=True)  # nothing comes back from a cache
    rows, run = _rows_file(tmp_path), tmp_path / "run"
    first = rate_file(rows, run, judge="fake:constant", options=options,
                      backends={"judge": fakes.constant_rater()}, judge_check=2)
    card_file = run / "judge_card.json"
    written = (card_file.read_bytes(), card_file.stat().st_mtime_ns)
    again = rate_file(rows, run, judge="fake:constant", options=options,
                      backends={"judge": fakes.constant_rater()}, judge_check=2)
    assert again.stats.requests == 0 and again.resumed == len(SAMPLES)
    assert (card_file.read_bytes(), card_file.stat().st_mtime_ns) == written  # written once
    assert again.lines()[0] == first.lines()[0] == json.loads(written[0])["line"]
    assert json.loads((run / "manifest.json").read_text())["judge_check"]["verdict"] == "noise"
    # another check (more probes) is not the one the card was made of: it runs
    bigger = rate_file(rows, run, judge="fake:constant", options=options,
                       backends={"judge": fakes.constant_rater()}, judge_check=3)
    assert bigger.stats.requests == 3 * 4 and read_card(run)["probes_per_kind"] == 3


def test_no_judge_check_writes_no_card(tmp_path: Path) -> None:
    from synthcodec.session import RunOptions
    from synthcodec.stages.rate import rate_file

    summary = rate_file(_rows_file(tmp_path), tmp_path / "run", judge="fake:constant",
                        options=RunOptions(progress=False, no_cache=True),
                        backends={"judge": fakes.constant_rater()}, judge_check=0)
    assert read_card(tmp_path / "run") is None and summary.judge_line is None
    assert summary.stats.requests == len(SAMPLES)


def test_compare_puts_the_card_into_its_report(tmp_path: Path) -> None:
    from synthcodec.session import RunOptions
    from synthcodec.stages.compare import compare_files

    a = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "question": s.question, "answer": s.response}
                                           for i, s in enumerate(SAMPLES)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": i, "question": s.question,
                                            "answer": SAMPLES[(i + 1) % 9].response}
                                           for i, s in enumerate(SAMPLES)])
    code = compare_files((str(a), str(b)), run_dir=tmp_path / "cmp", judge="fake:first",
                         options=RunOptions(progress=False, no_cache=True), judge_check=2,
                         backends={"judge": fakes.always_first()}).exit_code
    assert code == 0
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert report["judge_check"]["verdict"] == "noise"
    assert report["judge_check"]["probes"]["swap"]["rate"] == 0.0
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert md.index("> **Judge check**: judge fake:first: noise") < md.index("| benchmark |")
    assert "## Judge card: `fake:first` as pairwise judge" in md
    # a re-run sends nothing (the verdicts and the card are kept) and reports the same card
    backend = fakes.always_first()
    code = compare_files((str(a), str(b)), run_dir=tmp_path / "cmp", judge="fake:first",
                         options=RunOptions(progress=False, no_cache=True), judge_check=2,
                         backends={"judge": backend}).exit_code
    assert code == 0 and backend.calls == []
    assert (tmp_path / "cmp" / "report.md").read_text() == md
