"""Stages one at a time (the by-hand path), hand-written metadata, and the recipe runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthcodec.codeclm import CodecConfig
from synthcodec.codeclm.files import ledger
from synthcodec.codeclm.loop import contrast_plan, improve_plan, respond_plan
from synthcodec.codeclm.pipeline import run_metadata_command, run_stage_command
from synthcodec.codeclm.recipe import generate_job
from synthcodec.codeclm.stages import decode_plan, encode_plan, rubrics_plan
from synthcodec.errors import UserError
from synthcodec.llm import FakeBackend
from synthcodec.session import RunOptions
from tests.helpers import read_jsonl, write_jsonl
from tests.unit.test_codeclm_loop import SEEDS, _generate, strong_model, target_model

CFG = CodecConfig(pool_size=3, per_metadata=3)


def _stage(run: Path, plan_of, cfg: CodecConfig = CFG):  # type: ignore[no-untyped-def]
    """One stage command by hand, with the fake models."""
    options = RunOptions(progress=False, cache_path=str(run.parent / "cache.sqlite"))
    backends = {"strong": FakeBackend(strong_model), "target": FakeBackend(target_model)}
    return run_stage_command(plan_of, run_dir=run, roles={"strong": "fake:s", "target": "fake:t"},
                             cfg=cfg, options=options, backends=backends)


def test_rounds_by_hand_give_the_same_pairs_as_generate(tmp_path: Path) -> None:
    _generate(tmp_path, FakeBackend(strong_model), FakeBackend(target_model), run="gen")
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    hand = tmp_path / "hand"
    _stage(hand, lambda ctx, m, run: encode_plan(ctx, m, str(seeds), {}, None))
    run_metadata_command(run_dir=hand, cfg=CFG, overwrite=False)
    _stage(hand, lambda ctx, m, run: decode_plan(ctx, m, run.path))
    _stage(hand, lambda ctx, m, run: rubrics_plan(ctx, m, run.path))
    with pytest.raises(UserError, match="judged before any rewrite"):
        _stage(hand, improve_plan)
    for _ in range(4):
        _stage(hand, respond_plan)
        _stage(hand, contrast_plan)
        if _ < 3:
            _stage(hand, improve_plan)
    with pytest.raises(UserError, match="was the last"):
        _stage(hand, improve_plan)
    gen = read_jsonl(tmp_path / "gen" / "output.jsonl")
    hand = read_jsonl(tmp_path / "hand" / "output.jsonl")
    # The same pairs, field for field: instruction, both answers, scores, decision, lineage.
    by_id = {p["id"]: p for p in gen}
    assert sorted(by_id) == sorted(p["id"] for p in hand) and len(hand) == 6
    for pair in hand:
        assert pair == by_id[pair["id"]]
    rejected = read_jsonl(tmp_path / "hand" / "rejected.jsonl")
    gen_rejected = {r["id"]: r for r in read_jsonl(tmp_path / "gen" / "rejected.jsonl")}
    assert sorted(r["id"] for r in rejected) == sorted(gen_rejected)
    for r in rejected:
        assert r["decision"] == "unresolved" and len(r["history"]) == 3
        # One Contrastive Filtering: the same rows, bookkeeping and reasons included.
        assert r == gen_rejected[r["id"]]
    for name in ("output.jsonl", "rejected.jsonl", "failed.jsonl"):
        assert read_jsonl(tmp_path / "hand" / name) == read_jsonl(tmp_path / "gen" / name)
    assert (tmp_path / "hand" / "improved_4.jsonl").exists()


def test_every_invocation_writes_a_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcodec.rundir_reader import Run
    from tests.helpers import cli

    result = _generate(tmp_path, FakeBackend(strong_model), FakeBackend(target_model))
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["exit_code"] == result.exit_code == 0
    files = {"ok": len(read_jsonl(run / "output.jsonl")),
             "rejected": len(read_jsonl(run / "rejected.jsonl")),
             "failed": len(read_jsonl(run / "failed.jsonl"))}
    assert manifest["counts"] == {"input": sum(files.values()), **files}  # rate's keys
    assert manifest["counts"]["ok"] > 0 and manifest["usage_total"]["requests"] > 0
    assert manifest["usage_total"]["requests"] == ledger(run).total_stats()["requests"]
    assert Run(run).status() == "complete"
    # A stage command by hand: the run's three files are not published yet.
    monkeypatch.setenv("SYNTHCODEC_CACHE", str(tmp_path / "cache.sqlite"))
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    assert cli("encode", str(seeds), "--strong", "fake:echo", "-o", str(tmp_path / "hand"),
               "--quiet") == 0
    manifest = json.loads((tmp_path / "hand" / "manifest.json").read_text())
    assert (manifest["status"], manifest["stage"], manifest["exit_code"]) == ("incomplete",
                                                                              "encode", 0)
    assert manifest["counts"]["input"] == len(SEEDS)
    assert Run(tmp_path / "hand").status() == "incomplete"


def test_hand_written_metadata_is_used_as_is(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "metadata.jsonl", [{"use_case": "creative writing", "skills": "poetry, humor"}])
    said: list[str] = []
    run_metadata_command(run_dir=run, cfg=CFG, overwrite=False, say=said.append)
    assert any("by hand" in line for line in said), said
    _stage(run, lambda ctx, m, run: decode_plan(ctx, m, run.path))
    rows = read_jsonl(run / "instructions.jsonl")
    assert len(rows) == 3 and rows[0]["metadata_id"] == "m0000"
    assert rows[0]["skills"] == ["poetry", "humor"]


def test_changed_settings_need_overwrite(tmp_path: Path) -> None:
    _generate(tmp_path, FakeBackend(strong_model), FakeBackend(target_model))
    with pytest.raises(UserError, match="other settings.*theta"):
        _generate(tmp_path, FakeBackend(strong_model), FakeBackend(target_model), theta=5.0)


def test_recipe_table_becomes_typed_settings() -> None:
    table = {"seeds": "examples/seeds.jsonl", "strong": "local", "target": "local", "n": 4,
             "output": "runs/x", "per-metadata": 2, "max_tokens": 128, "quiet": True,
             "no-cache": False, "field": {"instruction": "text"}, "size": 7, "rubrics": 3,
             "theta": 2.5, "concurrency": 8, "budget": 1.5}
    job = generate_job(table, "r.toml [generate]")
    assert (job.seeds, job.strong, job.target, job.n, job.run_dir) == (
        "examples/seeds.jsonl", "local", "local", 4, "runs/x")
    assert (job.cfg.per_metadata, job.cfg.max_tokens, job.cfg.pool_size, job.cfg.n_rubrics,
            job.cfg.theta) == (2, 128, 7, 3, 2.5)
    assert job.options.progress is False and job.options.no_cache is False
    assert (job.options.concurrency, job.options.budget) == (8, 1.5)
    assert job.mapping == {"instruction": "text"}
    base = {"seeds": "s", "strong": "m", "target": "m", "output": "o"}
    with pytest.raises(UserError, match="unknown key 'thetta'"):
        generate_job({**base, "thetta": 3}, "r.toml")
    with pytest.raises(UserError, match=r"r.toml: size: .*1"):  # the option's own range
        generate_job({**base, "size": 0}, "r.toml")
    with pytest.raises(UserError, match="quiet is a flag"):
        generate_job({**base, "quiet": "yes"}, "r.toml")
    with pytest.raises(UserError, match="strong is required"):
        generate_job({"seeds": "s", "target": "m", "output": "o"}, "r.toml")
    # judge-json = false is --judge-text
    assert generate_job({**base, "judge-json": True}, "r").cfg.judge_json is True
    assert generate_job({**base, "judge-json": False}, "r").cfg.judge_json is False
    # Every option of run_options is a recipe key, the newer ones included.
    job = generate_job({**base, "executor": "ray", "ray-address": "auto"}, "r")
    assert (job.options.executor, job.options.ray_address) == ("ray", "auto")
    job = generate_job({**base, "batch": True, "batch-poll": 5, "batch_size": 100,
                        "price": "1,2"}, "r")
    assert (job.options.batch, job.options.batch_poll, job.options.batch_size,
            job.options.price) == (True, 5.0, 100, ("1,2",))
    with pytest.raises(UserError, match="r: executor: .*'spark'"):
        generate_job({**base, "executor": "spark"}, "r")


def test_run_command_rejects_unknown_kinds(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from synthcodec.commands.run import command

    recipe = tmp_path / "r.toml"
    recipe.write_text('[experimentz]\nx = 1\n')
    result = CliRunner().invoke(command, [str(recipe)])
    assert isinstance(result.exception, UserError)
    assert "known kinds: " in str(result.exception) and "generate" in str(result.exception)


def test_example_recipe_parses() -> None:
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    data = tomllib.loads((repo / "examples" / "recipe.toml").read_text())
    job = generate_job(data["generate"], "examples/recipe.toml [generate]")
    assert job.seeds == "examples/seeds.jsonl" and job.export_format == "alpaca"
    seeds = read_jsonl(repo / "examples" / "seeds.jsonl")
    assert len(seeds) >= 6 and all(set(s) == {"id", "instruction"} for s in seeds)
    assert len({s["id"] for s in seeds}) == len(seeds)  # ids join kept pairs to their seeds
    assert all(s["instruction"].strip() for s in seeds)
