"""`synthcodec benchmark` without a model: option parsing, model specs, local task data,
refusals (code execution, log-likelihood tasks on a server), the summary table."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # nothing here may download
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from synthcodec.cli import main  # noqa: E402
from synthcodec.errors import MissingExtraError, UserError  # noqa: E402
from synthcodec.lmeval import (  # noqa: E402
    BenchmarkSettings,
    ModelTarget,
    localize_config,
    parse_tasks,
    render_summary,
    require_extra,
    resolve_model,
    summary_rows,
    write_outputs,
)
from tests.lmeval_tasks import write_tasks  # noqa: E402

HAVE_LM_EVAL = importlib.util.find_spec("lm_eval") is not None
needs_lm_eval = pytest.mark.skipif(not HAVE_LM_EVAL, reason="needs synthcodec[eval]")

# The shape of lm_eval 0.4's results: a task, a group with one subtask, stderr beside each.
RESULTS = {
    "results": {
        "mini_mmlu": {"alias": "mini_mmlu", "acc,none": 0.5, "acc_stderr,none": 0.25},
        "mini_bbh": {"alias": "mini_bbh", "exact_match,strict-match": 0.75,
                     "exact_match_stderr,strict-match": "N/A"},
        "grp": {"alias": "grp", "acc,none": 0.4, "acc_stderr,none": 0.1},
        "grp_a": {"alias": " - grp_a", "acc,none": 0.4, "acc_stderr,none": 0.1},
    },
    "groups": {"grp": {"alias": "grp", "acc,none": 0.4, "acc_stderr,none": 0.1}},
    "versions": {"mini_mmlu": 1.0, "mini_bbh": 2.0, "grp_a": 0.0},
    "n-shot": {"mini_mmlu": 0, "mini_bbh": 3, "grp_a": 5},
    "n-samples": {"mini_mmlu": {"original": 6, "effective": 4},
                  "mini_bbh": {"original": 4, "effective": 4},
                  "grp_a": {"original": 10, "effective": 4}},
    "samples": {"mini_mmlu": [{"doc_id": i} for i in range(4)]},
}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0), capsys.readouterr().err


def test_parse_tasks() -> None:
    assert parse_tasks("mmlu, bbh,mmlu") == ["mmlu", "bbh"]
    assert parse_tasks(("mmlu", "drop,humaneval")) == ["mmlu", "drop", "humaneval"]
    assert parse_tasks("mmlu_*") == ["mmlu_*"]
    with pytest.raises(UserError, match="at least one task"):
        parse_tasks(" , ")
    with pytest.raises(UserError, match="not a task name"):
        parse_tasks("mmlu bbh")


def test_model_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-only")
    api = resolve_model("llama3@http://127.0.0.1:8000/v1/")
    # The OpenAI key never goes to a server the user merely named (llm/spec.py).
    assert "sk-openai-only" not in json.dumps(api.args)
    assert api.lm == "local-completions" and not api.loglikelihood
    assert api.args["base_url"] == "http://127.0.0.1:8000/v1/completions"
    assert api.args["model"] == "llama3" and api.args["tokenized_requests"] is False
    openai = resolve_model("openai:gpt-4o-mini")
    assert openai.args["base_url"].startswith("https://api.openai")
    assert openai.args["header"]["Authorization"] == "Bearer sk-openai-only"
    assert "header" not in openai.public_args()
    hf_dir = tmp_path / "model"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")
    hf = resolve_model(f"hf:{hf_dir}", batch_size=4)
    assert hf.lm == "hf" and hf.loglikelihood
    assert hf.args == {"pretrained": str(hf_dir.resolve()), "batch_size": 4}
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    g = resolve_model(f"gguf:{gguf}")
    assert g.args["pretrained"] == str(tmp_path.resolve()) and g.args["gguf_file"] == "m.gguf"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "synthcodec_train.json").write_text(json.dumps(
        {"base": {"spec": str(gguf), "kind": "gguf", "path": str(gguf)}}))
    a = resolve_model(f"hf:{adapter}")
    assert a.args["peft"] == a.args["tokenizer"] == str(adapter.resolve())
    assert a.args["gguf_file"] == "m.gguf"
    for bad, message in [("hf:/nope", "no such file"), ("gguf:/nope.gguf", "no such .gguf"),
                         ("llama@ftp://x", "must look like http"), ("what", "expected local"),
                         ("@http://127.0.0.1:1/v1", "name the model before the @")]:
        with pytest.raises(UserError, match=message):
            resolve_model(bad)


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"synthcodec\[eval\]"):
        require_extra()


def test_local_copies_of_data(tmp_path: Path) -> None:
    (tmp_path / "cais" / "mmlu").mkdir(parents=True)
    yaml_path = tmp_path / "sub" / "t.yaml"
    cfg = {"dataset_path": "cais/mmlu", "dataset_kwargs": {"data_files": {"test": "d.jsonl"}}}
    out = localize_config(cfg, tmp_path, yaml_path)
    assert out["dataset_path"] == str((tmp_path / "cais" / "mmlu").resolve())
    assert out["dataset_kwargs"]["data_files"] == {"test": str(tmp_path / "sub" / "d.jsonl")}
    kept = localize_config({"dataset_path": "openai/gsm8k"}, tmp_path, None)
    assert kept["dataset_path"] == "openai/gsm8k"  # no local copy: the Hub, as lm_eval does


def test_summary_table_names_tasks_metrics_versions_and_counts(tmp_path: Path) -> None:
    rows = summary_rows(RESULTS)
    by = {(r["task"], r["metric"], r["filter"]): r for r in rows}
    assert set(by) == {("mini_mmlu", "acc", "none"), ("mini_bbh", "exact_match", "strict-match"),
                       ("grp_a", "acc", "none"), ("grp", "acc", "none")}
    assert by[("mini_mmlu", "acc", "none")]["n"] == 4 and by[("mini_mmlu", "acc", "none")]["of"] == 6
    assert by[("mini_bbh", "exact_match", "strict-match")]["stderr"] is None
    assert by[("grp", "acc", "none")]["group"] is True
    text = render_summary(rows, {"model": "local", "harness_version": "0.4.13",
                                 "tasks": ["mini_mmlu", "mini_bbh", "grp"], "limit": 4,
                                 "shots": None, "seconds": 1.0})
    assert "| mini_mmlu | 1.0 | 0 | 4 of 6 | acc | none | 0.5000 | 0.2500 |" in text
    assert "| mini_bbh | 2.0 | 3 | 4 | exact_match | strict-match | 0.7500 | – |" in text
    assert "| grp (group) |" in text and "lm-eval) 0.4.13" in text and "first 4 documents" in text

    target = ModelTarget("local", "hf", {"pretrained": "/m"}, True, "the embedded model")
    result = write_outputs(tmp_path / "run", json.loads(json.dumps(RESULTS)), target=target,
                           settings=BenchmarkSettings(tasks=["mini_mmlu"], limit=4),
                           seconds=2.0, say=lambda m: None)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["versions"]["mini_mmlu"] == 1.0 and "samples" not in saved
    assert saved["synthcodec"]["limit"] == 4 and saved["synthcodec"]["model"] == "local"
    assert len((tmp_path / "run" / "samples_mini_mmlu.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "run" / "summary.md").read_text().startswith("# Benchmark `local`")
    assert len(result.rows) == 4


@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "--limit"),
    (["--shots", "-1"], "--shots"),
    (["--tasks", "a b"], "not a task name"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    base = ["benchmark", "fake@http://127.0.0.1:9/v1", "-o", str(tmp_path / "r")]
    if "--tasks" not in args:
        base += ["--tasks", "mini_mmlu"]
    code, err = run_cli(base + args, capsys)
    assert code == 2 and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_bad_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["benchmark", "hf:/no/such/dir", "--tasks", "x", "-o",
                         str(tmp_path / "r")], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "no such file" in err


@needs_lm_eval
@pytest.mark.parametrize("task", ["mini_code", "humaneval"])
def test_code_execution_is_refused_without_the_flag(tmp_path: Path, task: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tasks(tmp_path / "tasks")
    # The server is never contacted: the refusal comes before any model or data loads.
    code, err = run_cli(["benchmark", "fake@http://127.0.0.1:9/v1", "--tasks", task,
                         "--data-dir", str(data), "-o", str(tmp_path / "r")], capsys)
    assert code == 2 and f"{task} executes code" in err and "--allow-code-execution" in err
    assert not (tmp_path / "r").exists()


@needs_lm_eval
def test_server_models_refuse_loglikelihood_tasks(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tasks(tmp_path / "tasks")
    code, err = run_cli(["benchmark", "fake@http://127.0.0.1:9/v1", "--tasks",
                         "mini_mmlu,mini_bbh", "--data-dir", str(data), "-o",
                         str(tmp_path / "r")], capsys)
    assert code == 2 and "mini_mmlu score answer choices by log-likelihood" in err
    code, err = run_cli(["benchmark", "local", "--tasks", "no_such_task", "--data-dir",
                         str(data), "-o", str(tmp_path / "r")], capsys)
    assert code == 2 and "unknown task 'no_such_task'" in err


def test_help_says_what_code_execution_means() -> None:
    from click.testing import CliRunner

    from synthcodec.commands.benchmark import command

    out = CliRunner().invoke(command, ["--help"], terminal_width=200).output
    assert "--allow-code-execution" in out and "subprocess with a time limit" in out
    assert "network" in out and "temporary working directory" in out
