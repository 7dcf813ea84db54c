"""`select --by`: every signal on score runs, rate runs and plain files, ties broken by input
order; the diversity passes (MinHash near-duplicates, k-center); `--evaluate` (AUC,
precision at k)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import synthcodec as sc
from synthcodec.diversity import k_center, near_duplicate_groups
from synthcodec.judging.stats import auc
from synthcodec.llm import FakeBackend
from synthcodec.llm.base import ContinuationRequest
from synthcodec.session import RunOptions
from synthcodec.stages.rate import rate_file
from synthcodec.stages.score import random_key, score_file
from synthcodec.stages.select_eval import precision_at
from tests.helpers import cli, read_jsonl

# IFD by the scripted log-probabilities below: row i gets IFD IFDS[i].
IFDS = [0.5, 0.9, 1.2, 0.9, 0.3, 1.0, 0.7]
OUTPUTS = ["a b c d", "w x", "one two three four five six", "p q",
           "long answer with many words here", "z", "m n o"]


def rows() -> list[dict[str, Any]]:
    return [{"instruction": f"Task {i}", "input": "", "output": OUTPUTS[i]}
            for i in range(len(IFDS))]


def logprobs(request: ContinuationRequest) -> list[float]:
    n = len(request.continuation.split())
    if not request.messages[-1]["content"]:
        return [-1.0] * n
    found = re.search(r"Task (\d+)", request.messages[-1]["content"])
    assert found is not None
    task = int(found.group(1))
    return [-IFDS[task]] * n


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    run = tmp_path / "scored"
    summary = score_file(data, run, options=RunOptions(progress=False, no_cache=True),
                         backends={"scorer": FakeBackend(logprobs=logprobs)})
    assert summary.kept == len(IFDS)
    return run


def picked(path: Path) -> list[str]:
    return [r["instruction"] for r in read_jsonl(path)]


def test_by_ifd_drops_flagged_rows_and_breaks_ties_by_order(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    assert cli("select", str(scored), "--by", "ifd", "--top", "3", "-o", str(out)) == 0
    # Highest IFD below 1: 0.9 (task 1), 0.9 (task 3, later), 0.7; 1.2 and 1.0 are flagged.
    assert picked(out) == ["Task 1", "Task 3", "Task 6"]  # written in input order
    summary = json.loads((tmp_path / "k.summary.json").read_text())
    assert summary["rule"]["text"] == "top 3 by ifd (ifd < 1)"
    assert summary["flagged_ifd_ge_1"] == 2 and summary["kept"] == 3
    assert (scored / "ifd.png").read_bytes()[:4] == b"\x89PNG"
    # A tie at the cut: top 1 takes the earlier of the two 0.9s.
    assert cli("select", str(scored), "--by", "ifd", "--top", "1", "-o", str(out)) == 0
    assert picked(out) == ["Task 1"]
    # --max replaces the flag rule; --lowest ranks the smallest first.
    assert cli("select", str(scored), "--by", "ifd", "--max", "2", "--top", "2", "-o",
               str(out)) == 0
    assert picked(out) == ["Task 2", "Task 5"]  # 1.2, 1.0
    assert cli("select", str(scored), "--by", "ifd", "--lowest", "--top", "2", "-o",
               str(out)) == 0
    assert picked(out) == ["Task 0", "Task 4"]  # 0.3, 0.5


def test_frac_and_bounds(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    assert cli("select", str(scored), "--by", "ifd", "--frac", "0.3", "-o", str(out)) == 0
    assert len(read_jsonl(out)) == 2  # round(0.3 * 7) = 2
    assert cli("select", str(scored), "--by", "ifd", "--min", "0.6", "-o", str(out)) == 0
    assert picked(out) == ["Task 1", "Task 3", "Task 6"]  # 0.9, 0.9, 0.7 (flagged out)


def test_by_length_and_by_column(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    assert cli("select", str(scored), "--by", "length", "--top", "2", "-o", str(out)) == 0
    assert picked(out) == ["Task 2", "Task 4"]  # 6 words each; the longest two
    assert cli("select", str(scored), "--by", "length", "--top", "1", "-o", str(out)) == 0
    assert picked(out) == ["Task 2"]  # the tie at 6 goes to the earlier row
    # Any numeric column: the direct loss is 1.0 everywhere: all tie, the first rows win.
    assert cli("select", str(scored), "--by", "ifd_direct_loss", "--top", "2", "-o",
               str(out)) == 0
    assert picked(out) == ["Task 0", "Task 1"]


def test_by_random_is_the_same_on_score_and_rate_runs(scored: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    rated = tmp_path / "rated"
    rate_file(data, rated, judge="fake:j", options=RunOptions(progress=False, no_cache=True),
              backends={"judge": FakeBackend(lambda r: "4\nok")})
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert cli("select", str(scored), "--by", "random", "--top", "3", "-o", str(a)) == 0
    # The rate run has no random column: the key is computed from the row with seed 0.
    assert cli("select", str(rated), "--random", "3", "-o", str(b)) == 0
    assert picked(a) == picked(b)
    keys = {r["instruction"]: random_key(0, r["instruction"], "", r["output"]) for r in rows()}
    assert set(picked(a)) == set(sorted(keys, key=lambda k: -keys[k])[:3])
    # The same on a rate run by length: length needs no score run either.
    assert cli("select", str(rated), "--by", "length", "--top", "1", "-o", str(b)) == 0
    assert picked(b) == ["Task 2"]


def test_missing_signal_column_names_the_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b", "ifd": 0.5}\n'
                    '{"instruction": "c", "output": "d"}\n')
    assert cli("select", str(data), "--by", "ifd", "--top", "1", "-o",
               str(tmp_path / "k.jsonl")) == 2
    err = capsys.readouterr().err
    assert "d.jsonl:2: field 'ifd': missing (score the data first" in err


# ------------------------------------------------------------------------- diversity


def test_minhash_groups_known_near_duplicates() -> None:
    texts = ["Write a short poem about the sea at night and the stars above it",
             "Explain how photosynthesis works to a ten year old child",
             "Write a short poem about the sea at night and the stars above it!",
             "write a SHORT poem about the sea at night and the stars above it, please",
             "List five prime numbers greater than one hundred and explain why"]
    assert near_duplicate_groups(texts) == [0, 1, 0, 0, 4]
    assert near_duplicate_groups(texts, threshold=0.98) == [0, 1, 0, 3, 4]


def test_diverse_minhash_skips_near_duplicates_of_better_rows(tmp_path: Path) -> None:
    poem = "Write a short poem about the sea at night and the stars above it"
    data = tmp_path / "d.jsonl"
    table = [(poem, 0.9), ("Explain photosynthesis to a child in a few words", 0.5),
             (poem + "!", 0.8), ("List five prime numbers above one hundred", 0.4)]
    data.write_text("".join(json.dumps({"instruction": t, "output": "the same answer here",
                                        "ifd": v}) + "\n" for t, v in table))
    out = tmp_path / "k.jsonl"
    assert cli("select", str(data), "--by", "ifd", "--top", "3", "--diverse", "minhash",
               "-o", str(out)) == 0
    assert [r["ifd"] for r in read_jsonl(out)] == [0.9, 0.5, 0.4]  # 0.8 repeats 0.9's row
    summary = json.loads((tmp_path / "k.summary.json").read_text())
    assert summary["near_duplicates_skipped"] == 1
    assert summary["rule"]["text"] == "top 3 by ifd (ifd < 1), no near-duplicates"


def test_k_center_on_a_toy_embedding_set() -> None:
    # Best first: two near the x axis, one on y, one opposite x.
    vectors = [[1.0, 0.0], [0.95, 0.05], [0.0, 1.0], [-1.0, 0.0], [0.1, 0.9]]
    assert k_center(vectors, 1) == [0]
    assert k_center(vectors, 3) == [0, 3, 2]  # farthest from x, then farthest from both
    assert k_center(vectors, 10) == [0, 3, 2, 4, 1]  # every vector, the near-copy of 0 last
    assert k_center([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], 2) == [0, 2]


def test_diverse_kcenter_through_the_api(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    instructions = ["cats cats", "cats cats cats", "dogs", "cats", "fish"]
    data.write_text("".join(json.dumps({"instruction": t, "output": "x", "quality": 5 - i})
                            + "\n" for i, t in enumerate(instructions)))
    embedder = FakeBackend()  # a bag-of-words vector: all "cats" rows point the same way
    kept = sc.select(data, by="quality", top=3, diverse="kcenter", embed_backend=embedder,
                     output=tmp_path / "k.jsonl")
    assert [r["instruction"] for r in kept.rows] == ["cats cats", "dogs", "fish"]
    assert kept.summary["kcenter_pool"] == 5
    assert len(embedder.calls) == 5


# ------------------------------------------------------------------------- --evaluate


def test_auc_and_precision_by_hand() -> None:
    keys = [(1, 0.9), (1, 0.8), (1, 0.8), (1, 0.1)]
    labels = [True, False, True, False]
    # Pairs (pos, neg): (0.9, 0.8) win, (0.9, 0.1) win, (0.8, 0.8) tie, (0.8, 0.1) win.
    assert auc(keys, labels) == 3.5 / 4
    assert precision_at(keys, labels, 2) == 0.5  # 0.9 and the earlier 0.8 (a drop)
    assert auc(keys, [True] * 4) is None
    assert auc([(0, 1.5), (1, 0.2)], [False, True]) == 1.0  # a flagged IFD ranks last


def test_evaluate_reports_every_signal(scored: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "labels.jsonl"
    keep = {"Task 1", "Task 6"}
    labels.write_text("".join(json.dumps({**r, "label": "keep" if r["instruction"] in keep
                                          else "drop"}) + "\n" for r in rows()))
    out = tmp_path / "k.jsonl"
    assert cli("select", str(scored), "--by", "ifd", "--top", "2", "--evaluate", str(labels),
               "-o", str(out)) == 0
    ev = json.loads((tmp_path / "k.summary.json").read_text())["evaluation"]
    assert (ev["matched"], ev["positives"], ev["k"]) == (7, 2, 2)
    # By IFD the two best are tasks 1 and 3 (0.9 each): one of them is a keep.
    assert ev["signals"]["ifd"]["precision_at_k"] == 0.5
    # Positives 0.9 and 0.7 against negatives 0.5, 0.9, 0.3 and the flagged 1.2, 1.0:
    # 0.9 beats 4 and ties 1 -> 4.5; 0.7 beats 4 -> 4; of 10 pairs.
    assert ev["signals"]["ifd"]["auc"] == 8.5 / 10
    assert set(ev["signals"]) == {"ifd", "length", "random"}
    # Lengths 4 2 6 2 5 1 3: the two longest (tasks 2, 4) are drops; the positives' 2 and 3
    # against 4, 6, 2, 5, 1: 2 beats 1 and ties 2 -> 1.5, 3 beats 2 and 1 -> 2; of 10 pairs.
    assert ev["signals"]["length"] == {"auc": 3.5 / 10, "precision_at_k": 0.0}
    assert "precision at 2" in capsys.readouterr().err


def test_select_reads_the_run_once_per_pass(scored: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal, the export (kept and rejected together) and --evaluate (the matches and
    every signal's values): three reads of the run's rows."""
    import synthcodec.stages.select as select_module
    import synthcodec.stages.select_rules as rules_module
    from synthcodec.stages.select import select_rows
    from synthcodec.stages.select_rules import Rule

    reads: list[Path] = []

    def counted(module: Any) -> Any:
        original = module.iter_rows

        def iter_rows(path: Any, *args: Any, **kwargs: Any) -> Any:
            reads.append(Path(path))
            return original(path, *args, **kwargs)
        return iter_rows

    monkeypatch.setattr(select_module, "iter_rows", counted(select_module))
    monkeypatch.setattr(rules_module, "iter_rows", counted(rules_module))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({**r, "label": i % 2 == 0}) + "\n"
                              for i, r in enumerate(rows())))
    out = tmp_path / "k.jsonl"
    sel = select_rows(scored, out, Rule(by="ifd", top=2), evaluate=labels)
    assert picked(out) == ["Task 1", "Task 3"] and sel.summary["evaluation"]["matched"] == 7
    assert len(read_jsonl(tmp_path / "k.rejected.jsonl")) == len(IFDS) - 2
    assert reads.count(scored / "output.jsonl") == 3


def test_kcenter_without_an_embedder_stops_before_reading(scored: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import synthcodec.stages.select_rules as rules_module
    from synthcodec.errors import UserError
    from synthcodec.stages.select import select_rows
    from synthcodec.stages.select_rules import Rule

    def unread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the rows were read")

    monkeypatch.setattr(rules_module, "iter_rows", unread)
    with pytest.raises(UserError, match="--diverse kcenter needs an embedding model"):
        select_rows(scored, tmp_path / "k.jsonl", Rule(by="ifd", top=2, diverse="kcenter"))
    assert not list(tmp_path.glob("k*"))


def test_label_errors_name_the_line(scored: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({**rows()[0], "label": "maybe"}) + "\n")
    assert cli("select", str(scored), "--by", "ifd", "--top", "2", "--evaluate", str(labels),
               "-o", str(tmp_path / "k.jsonl")) == 2
    assert "labels.jsonl:1: field 'label': not a label: 'maybe'" in capsys.readouterr().err


def test_score_and_select_through_the_api(tmp_path: Path) -> None:
    scored = sc.score(rows(), run_dir=tmp_path / "s", no_cache=True, progress=False,
                      backends={"scorer": FakeBackend(logprobs=logprobs)})
    assert [r["ifd"] for r in scored.rows] == IFDS
    kept = sc.select(scored, by="ifd", top=2, output=tmp_path / "k.jsonl")
    assert [r["instruction"] for r in kept.rows] == ["Task 1", "Task 3"]
    assert kept.summary["rule"]["text"] == "top 2 by ifd (ifd < 1)"
