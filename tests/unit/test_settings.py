"""One source for settings: a settings dataclass's fields are the CLI options, the recipe keys
and the API keywords (synthcodec.settings)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import click
import pytest
from click.testing import CliRunner

from synthcodec.codeclm.config import CodecConfig
from synthcodec.codeclm.recipe import generate_job
from synthcodec.errors import UserError
from synthcodec.session import RunOptions
from synthcodec.settings import (
    click_options,
    convert,
    from_kwargs,
    options_of,
    recipe_keys,
    setting,
)
from synthcodec.stages.answer import AnswerStage
from synthcodec.stages.complete import CompleteStage
from synthcodec.stages.rate import RateStage
from synthcodec.stages.score import ScoreStage


@dataclass(frozen=True)
class Knobs:
    size: int = setting(3, "--size", type=click.IntRange(1, 9), help="How many.")
    loud: bool = setting(True, "--quiet", invert=True, help="Say less.")
    json: bool | None = setting(None, "--json/--text", help="JSON or text.")
    tag: tuple[str, ...] = setting((), "--tag", multiple=True, help="Tags.")
    plain: int = 7  # not a setting


def _parse(args: list[str]) -> Knobs:
    seen: list[Knobs] = []

    @click.command()
    @click_options(Knobs)
    def cmd(**kwargs: object) -> None:
        seen.append(Knobs(**from_kwargs(Knobs, kwargs)))
        assert not kwargs  # every option was taken back

    result = CliRunner().invoke(cmd, args)
    assert result.exit_code == 0, result.output
    return seen[0]


def test_one_declaration_makes_the_options_and_their_values() -> None:
    assert _parse([]) == Knobs()
    assert _parse(["--size", "5", "--quiet", "--text", "--tag", "a", "--tag", "b"]) == Knobs(
        size=5, loud=False, json=False, tag=("a", "b"))


def test_an_option_checks_its_range_from_the_field() -> None:
    @click.command()
    @click_options(Knobs, "size")
    def cmd(**kwargs: object) -> None: ...

    result = CliRunner().invoke(cmd, ["--size", "10"])
    assert result.exit_code == 2 and "10 is not in the range 1<=x<=9" in result.output


def test_recipe_keys_are_the_flags_and_values_are_checked_like_the_option() -> None:
    keys = recipe_keys(Knobs)
    assert set(keys) == {"size", "quiet", "json", "tag"}  # `plain` is no setting
    name, option = keys["quiet"]
    assert name == "loud" and convert(option, None, True, "r.toml", "quiet") is False
    assert convert(keys["tag"][1], None, "x", "r.toml", "tag") == ("x",)
    with pytest.raises(UserError, match=r"r.toml: size: 12 is not in the range"):
        convert(keys["size"][1], None, 12, "r.toml", "size")
    with pytest.raises(UserError, match="r.toml: json is a flag"):
        convert(keys["json"][1], None, "yes", "r.toml", "json")


@pytest.mark.parametrize("cls", [RunOptions, CodecConfig, RateStage, CompleteStage, AnswerStage,
                                 ScoreStage])
def test_every_setting_has_one_flag_and_help(cls: type) -> None:
    flags = [o.long for _, o in options_of(cls)]
    assert len(flags) == len(set(flags))
    assert all(o.help or o.type is not None for _, o in options_of(cls))


def test_every_generate_option_is_a_recipe_key_with_its_field() -> None:
    # The recipe reads the same declarations: a new RunOptions or CodecConfig setting is a
    # recipe key without touching codeclm/recipe.py.
    base = {"seeds": "s.jsonl", "strong": "a", "target": "b", "output": "runs/x"}
    job = generate_job({**base, "size": 9, "rubrics": 2, "judge-json": False, "rpm": 60,
                        "cache": "c.sqlite", "quiet": True, "price": "1,2",
                        "ray-address": "127.0.0.1:1", "executor": "ray"}, "r.toml")
    assert (job.cfg.pool_size, job.cfg.n_rubrics, job.cfg.judge_json) == (9, 2, False)
    assert (job.options.rpm, job.options.cache_path, job.options.progress) == (60, "c.sqlite",
                                                                              False)
    assert job.options.price == ("1,2",) and job.options.ray_address == "127.0.0.1:1"
    settings = {f.name for f in fields(RunOptions)} - {"progress_interval"}
    assert {name for name, _ in recipe_keys(RunOptions).values()} == settings
