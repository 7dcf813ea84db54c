"""`synthcodec push`: the repository folder (--to-dir) and the upload, against a local
stand-in for the Hub's HTTP API (tests/viewer/fake_hub.py, $HF_ENDPOINT), no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthcodec.rundir_reader import append_review
from tests.helpers import synthcodec
from tests.viewer.fake_hub import FakeHub

datasets = pytest.importorskip("datasets")
hub = pytest.importorskip("huggingface_hub")


def test_to_dir_loads_with_datasets_and_the_card_parses(gen_run: Path, tmp_path: Path) -> None:
    append_review(gen_run, "m0000-i0", "rejected", "not tailored enough")
    out = tmp_path / "repo"
    r = synthcodec("push", str(gen_run), "--repo-id", "me/codec-demo", "--to-dir", str(out),
                   "--with-rejected", "--format", "alpaca", "--license", "apache-2.0")
    assert r.returncode == 0, r.stderr
    assert "wrote 5 kept rows and 4 rejected rows" in r.stderr
    kept = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"),
                                 split="train")
    rejected = datasets.load_dataset("parquet", data_files=str(out / "rejected" / "*.parquet"),
                                     split="train")
    assert kept.num_rows == 5 and rejected.num_rows == 4
    assert {"instruction", "input", "output", "seed_ids", "gap", "scores"} <= set(kept.column_names)
    assert "m0000-i0" not in kept["id"] and "m0000-i0" in rejected["id"]
    card = hub.DatasetCard.load(out / "README.md")
    assert card.data.license == "apache-2.0"
    assert [c["config_name"] for c in card.data.configs] == ["default", "rejected"]
    text = card.text
    for needle in ("fake:strong", "fake:target", "| kept (`default`) | 5 |", "2404.05875",
                   "2307.08701", "synthcodec generate", "--theta 3", "charts/gaps.png",
                   "apache-2.0", "seed_ids", "1 rows were reviewed by hand",
                   "| failed (not uploaded) | 0 |"):
        assert needle in text, needle
    assert (out / "charts" / "gaps.png").stat().st_size > 1000


def test_the_card_carries_the_runs_judge_card(gen_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir", str(out)).returncode == 0
    text = (out / "README.md").read_text()
    line = json.loads((gen_run / "judge_card.json").read_text())["line"]
    assert "## Judge card" in text and line in text and "| swap |" in text


def test_compare_and_rate_runs(cmp_run: Path, rate_run: Path, tmp_path: Path) -> None:
    from tests.helpers import read_jsonl

    # (run, its judge, the other run's judge, rows failed, what identifies each kept row)
    expected = [
        (cmp_run, "fake:judge", "fake:rater", 0, "question_id", "alpagasus",
         [(i, "tie" if i % 3 == 0 else "win") for i in range(9)]),
        (rate_run, "fake:rater", "fake:judge", 2, "instruction", "score",
         [("Task 0", 5), ("Task 1", 4), ("Task 2", 4), ("Task 4", 5), ("Task 5", 4),
          ("Task 6", 4)]),  # Task 3 and Task 7 were unreadable to the rater: failed
    ]
    for run, judge, other, failed, key, value, rows in expected:
        out = tmp_path / "out" / run.name
        assert synthcodec("push", str(run), "--repo-id", "me/x", "--to-dir", str(out)).returncode == 0
        card = hub.DatasetCard.load(out / "README.md")
        assert "unknown: check your seed/input data" in card.text
        assert f"- **judge**: `{judge}`" in card.text and other not in card.text
        ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"),
                                   split="train")
        assert [(r[key], r[value]) for r in ds] == rows
        # every column of every kept row, as the run wrote it (the bookkeeping as JSON text)
        published = [{k: v for k, v in r.items() if k != "_synthcodec"}
                     for r in read_jsonl(run / "output.jsonl")]
        assert [{k: v for k, v in r.items() if k != "_synthcodec"} for r in ds] == published
        assert f"| failed (not uploaded) | {failed} |" in card.text


def test_upload_to_a_stand_in_hub(gen_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hf_SECRET_token_123"
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_TOKEN", secret)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        # Only 127.0.0.1 is reached. huggingface_hub also reads TRANSFORMERS_OFFLINE, which
        # other test modules set for the whole session.
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        r = synthcodec("push", str(gen_run), "--repo-id", "me/codec-demo", "--private",
                       "--with-rejected")
        assert r.returncode == 0, r.stderr
        assert fake.repos["me/codec-demo"]["visibility"] == "private"
        files = fake.files["me/codec-demo"]
        assert {"README.md", "data/train-00000.parquet", "rejected/train-00000.parquet",
                "charts/scores.png"} <= set(files)
        assert ".synthcodec-push" not in files  # the folder marker stays local
        assert all(h.get("authorization") == f"Bearer {secret}" or
                   h.get("Authorization") == f"Bearer {secret}" for _, _, h in fake.requests)
    assert secret not in r.stderr + r.stdout
    assert secret.encode() not in files["README.md"]
    assert not list(gen_run.rglob("*.parquet"))  # nothing left in the run directory


def test_to_dir_replaces_only_a_folder_push_wrote(gen_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    for _ in range(2):  # the second push replaces the folder the first one wrote
        r = synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir", str(out))
        assert r.returncode == 0, r.stderr
    assert (out / "README.md").exists() and (out / ".synthcodec-push").exists()
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project")
    (project / "code.py").write_text("print(1)")
    r = synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir", str(project))
    assert r.returncode == 2 and "did not write" in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "code.py"]
    assert (project / "README.md").read_text() == "my project"


def test_push_without_token_or_of_a_live_run(gen_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    r = synthcodec("push", str(gen_run), "--repo-id", "me/x")
    assert r.returncode == 2 and "HF_TOKEN" in r.stderr
    from synthcodec.codeclm.files import RUN_KIND
    from synthcodec.store import RunDir

    out = gen_run.parent / "repo"
    writer = RunDir(gen_run).open(dict(RUN_KIND))  # a writer holds RUN/.lock: the run is live
    try:
        r = synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir", str(out))
    finally:
        writer.close()
    assert r.returncode == 2 and "is live" in r.stderr and not out.exists()
    assert synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir",
                      str(out)).returncode == 0  # once the writer is gone


def test_nothing_kept_is_refused_and_no_rejected_rows_leave_out_their_config(
        gen_run: Path, rate_run: Path, tmp_path: Path) -> None:
    import json

    # Every kept row marked rejected by hand: a dataset of no rows cannot be loaded, refused.
    for line in (gen_run / "output.jsonl").read_text().splitlines():
        append_review(gen_run, json.loads(line)["id"], "rejected", "")
    out = tmp_path / "empty"
    r = synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir", str(out))
    assert r.returncode == 2 and "has no kept rows" in r.stderr and not out.exists()

    # --with-rejected on a run that rejected nothing: no empty `rejected` config.
    out = tmp_path / "rate-repo"
    r = synthcodec("push", str(rate_run), "--repo-id", "me/x", "--to-dir", str(out),
                   "--with-rejected")
    assert r.returncode == 0 and "no rejected rows" in r.stderr, r.stderr
    assert not (out / "rejected").exists()
    assert [c["config_name"] for c in hub.DatasetCard.load(out / "README.md").data.configs] == ["default"]


# ---- issue 18: a second push never loses a file, and publishes no local path --------------

def test_a_push_over_a_folder_with_files_push_did_not_write_is_refused(
        gen_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    first = synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir", str(out))
    assert first.returncode == 0, first.stderr
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "data" / "notes.md").write_text("my notes")
    again = synthcodec("push", str(gen_run), "--repo-id", "me/x", "--to-dir", str(out))
    assert again.returncode == 2
    assert again.stderr == (f"error: {out / '.git'} (and 2 more) was not written by synthcodec "
                            "push, which replaces the whole folder: move it out, or push to "
                            "another folder\n")
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (out / "data" / "notes.md").read_text() == "my notes"
    assert (out / "data" / "train-00000.parquet").exists()


def test_a_push_that_fails_midway_leaves_the_last_folder_whole(
        gen_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcodec import push

    out = tmp_path / "repo"
    push.build_folder(gen_run, out, "me/x")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(before) >= 5

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed while writing the card")

    monkeypatch.setattr(push, "build_card", crash)
    with pytest.raises(RuntimeError, match="killed"):
        push.build_folder(gen_run, out, "me/x", fmt="alpaca")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "repo"]  # no half folder left
    monkeypatch.undo()
    push.build_folder(gen_run, out, "me/x", fmt="alpaca")  # replaces it, again beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "repo"]
    assert (out / "data" / "train-00000.parquet").read_bytes() != before[
        Path("data/train-00000.parquet")]


def test_the_card_names_local_files_without_their_folders(
        gen_run: Path, cmp_run: Path, rate_run: Path, tmp_path: Path) -> None:
    import json
    import re

    for run in (gen_run, cmp_run, rate_run):
        out = tmp_path / "out" / run.name
        r = synthcodec("push", str(run), "--repo-id", "me/x", "--to-dir", str(out))
        assert r.returncode == 0, r.stderr
        text = (out / "README.md").read_text()
        inputs = json.dumps(json.loads((run / "config.json").read_text())) + json.dumps(
            json.loads((run / "stages.json").read_text()) if (run / "stages.json").exists() else {})
        local = sorted(set(re.findall(r'"(/[^"]+\.jsonl)"', inputs)))
        assert local, inputs  # the run did record absolute paths
        for path in local:
            assert path not in text and str(Path(path).parent) not in text
            assert Path(path).name in text
        assert str(tmp_path) not in text


def test_public_path_keeps_what_is_not_a_local_path(tmp_path: Path) -> None:
    from synthcodec.datacard import public_path

    (tmp_path / "models").mkdir()
    assert public_path(str(tmp_path / "seeds.jsonl")) == "seeds.jsonl"
    assert public_path(f"gguf:{tmp_path}/models/m.gguf") == "gguf:m.gguf"
    for kept in ("/no_think", "fake:echo", "qwen@http://127.0.0.1:8080/v1", "relative/x.jsonl",
                 "/not/a/folder/here.jsonl", "a\n/b/c"):
        assert public_path(kept) == kept
