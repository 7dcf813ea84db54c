"""The stage contract (stages/base.py): every stage is built from plain settings, so it
pickles before `setup` (a distributed executor ships it to a worker), and `setup` is where
its clients come from."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from synthcodec.codeclm.config import CodecConfig
from synthcodec.codeclm.prompts import Prompts
from synthcodec.codeclm.stages import CodecStage
from synthcodec.judging.pairwise import JudgeSettings
from synthcodec.llm import FakeBackend
from synthcodec.session import Models, RunOptions
from synthcodec.stages.answer import AnswerStage
from synthcodec.stages.base import ModelStage
from synthcodec.stages.compare import JudgeStage
from synthcodec.stages.complete import CompleteStage
from synthcodec.stages.rate import RateStage

# Each stage with its roles and the settings given to it that its config() must carry.
STAGES: list[tuple[ModelStage, dict[str, str], dict[str, object]]] = [
    (CompleteStage(model="m@http://127.0.0.1:9/v1", max_tokens=32),
     {"model": "m@http://127.0.0.1:9/v1"}, {"max_tokens": 32}),
    (CompleteStage(model="local", json_schema={"type": "object"}),
     {"model": "local"}, {"json_schema": {"type": "object"}, "json_reasks": 2}),
    (RateStage(judge="openai:gpt-4o-mini", dimension="helpfulness"),
     {"judge": "openai:gpt-4o-mini"}, {"dimension": "helpfulness"}),
    (AnswerStage(model="local", bench="vicuna.jsonl", bench_format={"name": "vicuna"}),
     {"model": "local"}, {"bench": "vicuna.jsonl", "bench_format": {"name": "vicuna"}}),
    (JudgeStage(judge="local", settings=JudgeSettings(max_tokens=64)),
     {"judge": "local"}, {"judge_max_tokens": 64}),
    # CodecLM's resume check is the stage ledger's loop config, not config() (issue 19)
    (CodecStage(step="evolve", cfg=CodecConfig(theta=2.0), prompts=Prompts.load(None),
                judge=JudgeSettings(), strong="local", target="t@http://127.0.0.1:9/v1",
                actions={"m0": ["Add a constraint."]}),
     {"strong": "local", "target": "t@http://127.0.0.1:9/v1"}, {}),
]


@pytest.mark.parametrize(("stage", "roles", "settings"), STAGES,
                         ids=[f"{type(s).__name__}-{s.name}-{i}"
                              for i, (s, _, _) in enumerate(STAGES)])
def test_a_stage_pickles_before_setup_and_keeps_its_config(
        stage: ModelStage, roles: dict[str, str], settings: dict[str, object]) -> None:
    copy = pickle.loads(pickle.dumps(stage))
    assert copy == stage  # every setting survives the trip to a worker
    assert copy.roles == stage.roles == roles
    config = stage.config()
    assert copy.config() == config and {k: config.get(k) for k in settings} == settings


def test_setup_builds_the_clients_and_run_uses_them() -> None:
    stage = pickle.loads(pickle.dumps(CompleteStage(model="fake:x", max_tokens=16)))

    async def go() -> dict:
        models = Models.open({"model": "fake:x"}, RunOptions(no_cache=True),
                             backends={"model": FakeBackend(["hello"])})
        try:
            await stage.setup(models)
            return await stage.run({"prompt": "hi"})
        finally:
            await models.aclose()

    assert asyncio.run(go()) == {"response": "hello", "truncated": False}
