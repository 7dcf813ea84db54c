"""The experiment's recipe: the [experiment] table parsed into typed sections, each key
checked (a UserError names the table and the key), and the steps it makes, in order.
The package's docstring (synthcodec/experiment/__init__.py) shows a recipe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.experiment.datasets import (
    DatasetSpec,
    ScoreSpec,
    needs_score_step,
    parse_bakeoff,
    parse_dataset,
)
from synthcodec.judging.check import PRE_CHECK_PROBES
from synthcodec.lmeval import BenchmarkSettings

# --- The recipe -------------------------------------------------------------------------


def _take(table: dict[str, Any], where: str, known: Mapping[str, type | tuple[type, ...]]
          ) -> dict[str, Any]:
    """The table's keys (dashes or underscores), checked against `known` names and types."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UserError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")
        kind = known[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is not object and (not isinstance(value, kind) or (
                isinstance(value, bool) and kind in (int, float))):
            names = (kind.__name__ if isinstance(kind, type)
                     else " or ".join(k.__name__ for k in kind))
            raise UserError(f"{where}: {key} must be a {names}, got {value!r}")
        out[name] = value
    return out


@dataclass
class RateSpec:
    data: str
    judge: str
    limit: int | None = None
    dimension: str = "accuracy"
    max_tokens: int = 256
    json: bool | None = None
    reasks: int = 2


@dataclass
class TrainSpec:
    epochs: float | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    micro_batch_size: int | None = None
    lora_r: int = 16
    max_length: int = 2048
    seed: int = 0
    device: str | None = None


@dataclass
class BenchSpec:
    path: str
    name: str | None = None
    limit: int | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    system: str | None = None


@dataclass
class CompareSpec:
    judge: str
    pairs: list[tuple[str, str]]
    judge_max_tokens: int = 512
    reasks: int = 2


@dataclass
class Experiment:
    dir: Path
    base: str
    datasets: list[DatasetSpec]
    train: TrainSpec
    bench: BenchSpec
    compare: CompareSpec
    rate: RateSpec | None = None
    score: ScoreSpec | None = None  # set when a dataset selects by a score step's signal
    benchmarks: BenchmarkSettings | None = None  # `benchmarks = [...]` + its settings table
    name: str = "experiment"
    cache: str | None = None
    concurrency: int | None = None
    recipe_text: str | None = None  # the recipe as written, copied into the report
    judge_check_probes: int = PRE_CHECK_PROBES  # the judge check before rate and compare

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "[experiment]",
                   recipe_text: str | None = None) -> Experiment:
        """Parse and check an [experiment] table; UserError naming the bad key."""
        table = dict(table)
        subtables = {k: table.pop(k) for k in ("rate", "score", "datasets", "bakeoff", "train",
                                               "bench", "compare", "benchmark_settings",
                                               "benchmark-settings")
                     if k in table}
        if "benchmark-settings" in subtables:
            subtables["benchmark_settings"] = subtables.pop("benchmark-settings")
        top = _take(table, where, {"dir": str, "base": str, "judge": str, "name": str,
                                   "cache": str, "concurrency": int, "seed": int,
                                   "benchmarks": list, "judge_check_probes": int})
        if "dir" not in top:
            raise UserError(f"{where}: 'dir' (the experiment directory) is required")
        judge = top.get("judge", "local")
        seed = top.get("seed")
        for key in ("rate", "score", "datasets", "bakeoff", "train", "bench", "compare",
                    "benchmark_settings"):
            if key in subtables and not isinstance(subtables[key], dict):
                raise UserError(f"{where}: '{key}' must be a table ([experiment.{key}])")

        rate = None
        if "rate" in subtables:
            r = _take(subtables["rate"], f"{where[:-1]}.rate]",
                      {"data": str, "judge": str, "limit": int, "dimension": str,
                       "max_tokens": int, "json": bool, "reasks": int})
            if "data" not in r:
                raise UserError(f"{where[:-1]}.rate]: 'data' (the rows to rate) is required")
            rate = RateSpec(**{"judge": judge, **r})

        datasets: list[DatasetSpec] = []
        for name, d in (subtables.get("datasets") or {}).items():
            w = f"{where[:-1]}.datasets.{name}]"
            if not isinstance(d, dict):
                raise UserError(f"{w}: must be a table")
            datasets.append(parse_dataset(name, d, w, seed or 0, _take))
        if "bakeoff" in subtables:
            bakeoff = parse_bakeoff(subtables["bakeoff"], f"{where[:-1]}.bakeoff]", seed or 0,
                                    _take)
            clash = {d.name for d in datasets} & {d.name for d in bakeoff}
            if clash:
                raise UserError(f"{where}: the bake-off makes dataset '{sorted(clash)[0]}'; "
                                "name yours differently")
            datasets = bakeoff + datasets
        score = None
        s_where = f"{where[:-1]}.score]"
        pool_sets = [d for d in datasets if d.path is None]
        if ("score" in subtables or needs_score_step(datasets)
                or (rate is None and pool_sets)):
            score = ScoreSpec(**{"seed": seed or 0, **_take(
                subtables.get("score") or {}, s_where,
                {"data": str, "limit": int, "model": str, "seed": int})})
            if rate is not None and score.data is not None:
                raise UserError(f"{s_where}: the pool is [experiment.rate]'s data; drop 'data' "
                                "and 'limit' here")
            if rate is None and score.data is None:
                raise UserError(f"{s_where}: 'data' (the pool to select from) is required "
                                "without an [experiment.rate] table")
        for d in datasets:
            if d.path is None and d.signal == "score" and rate is None:
                raise UserError(f"{where[:-1]}.datasets.{d.name}]: selecting by score needs "
                                "an [experiment.rate] table")
        if len(datasets) < 2:
            raise UserError(f"{where}: define at least two [experiment.datasets.NAME] tables to "
                            "compare")
        names = [d.name for d in datasets]
        for d in datasets:
            if isinstance(d.random, str):
                if d.random not in names or d.random == d.name:
                    raise UserError(f"{where[:-1]}.datasets.{d.name}]: random = {d.random!r} "
                                    f"must name another dataset ({', '.join(names)})")
                if names.index(d.random) > names.index(d.name):
                    raise UserError(f"{where[:-1]}.datasets.{d.name}]: random = {d.random!r} "
                                    "must name a dataset defined before it")

        train = TrainSpec(**{"seed": seed or 0, **_take(
            subtables.get("train") or {}, f"{where[:-1]}.train]",
            {"epochs": float, "max_steps": int, "lr": float, "batch_size": int,
             "micro_batch_size": int, "lora_r": int, "max_length": int, "seed": int,
             "device": str})})
        if "bench" not in subtables:
            raise UserError(f"{where}: an [experiment.bench] table with 'path' is required")
        b = _take(subtables["bench"], f"{where[:-1]}.bench]",
                  {"path": str, "name": str, "limit": int, "max_tokens": int,
                   "temperature": float, "system": str})
        if "path" not in b:
            raise UserError(f"{where[:-1]}.bench]: 'path' (the benchmark questions) is required")
        bench = BenchSpec(**b)
        c = _take(subtables.get("compare") or {}, f"{where[:-1]}.compare]",
                  {"judge": str, "pairs": list, "judge_max_tokens": int, "reasks": int})
        pairs_raw = c.pop("pairs", None)
        if pairs_raw is None and "bakeoff" in subtables and "random" in names:
            pairs = [(a, "random") for a in names if a != "random"]  # each against random
        elif pairs_raw is None:
            pairs = [(a, bb) for i, a in enumerate(names) for bb in names[i + 1:]]
        else:
            pairs = []
            for p in pairs_raw:
                if (not isinstance(p, list) or len(p) != 2 or p[0] == p[1]
                        or any(x not in names for x in p)):
                    raise UserError(f"{where[:-1]}.compare]: pairs must be [[A, B], ...] of "
                                    f"two different datasets ({', '.join(names)}); got {p!r}")
                pairs.append((p[0], p[1]))
        compare = CompareSpec(pairs=pairs, **{"judge": judge, **c})
        benchmarks = None
        bs_where = f"{where[:-1]}.benchmark_settings]"
        bs = _take(subtables.get("benchmark_settings") or {}, bs_where,
                   {"limit": int, "shots": int, "data_dir": str, "batch_size": int,
                    "device": str, "allow_code_execution": bool})
        if "benchmarks" in top:
            from synthcodec.lmeval import parse_tasks

            try:
                tasks = parse_tasks(top["benchmarks"])
            except UserError as exc:
                raise UserError(f"{where}: benchmarks: {str(exc).removeprefix('--tasks: ')}"
                                ) from None
            for key in ("limit", "batch_size"):
                if key in bs and bs[key] < 1:
                    raise UserError(f"{bs_where}: {key} must be at least 1")
            if bs.get("shots", 0) < 0:
                raise UserError(f"{bs_where}: shots must be 0 or more")
            benchmarks = BenchmarkSettings(tasks=tasks, **bs)
        elif bs:
            raise UserError(f"{bs_where}: give the tasks too: benchmarks = [\"mmlu\", ...] in "
                            "[experiment]")
        return cls(dir=Path(top["dir"]), base=top.get("base", "local"), datasets=datasets,
                   train=train, bench=bench, compare=compare, rate=rate, score=score,
                   benchmarks=benchmarks,
                   name=top.get("name", "experiment"), cache=top.get("cache"),
                   concurrency=top.get("concurrency"), recipe_text=recipe_text,
                   judge_check_probes=max(0, top.get("judge_check_probes", PRE_CHECK_PROBES)))

    def plan(self) -> list[str]:
        """The steps in order, for --dry-run and the report."""
        steps = ["rate"] if self.rate else []
        steps += ["score"] if self.score else []
        steps += [f"data-{d.name}" for d in self.datasets]
        for d in self.datasets:
            steps += [f"train-{d.name}", f"answer-{d.name}"]
        steps += [f"compare-{a}-vs-{b}" for a, b in self.compare.pairs]
        if self.benchmarks:
            steps += ["benchmark-base"] + [f"benchmark-{d.name}" for d in self.datasets]
        return steps + ["report"]


def describe(exp: Experiment) -> str:
    return (f"{exp.name}: {len(exp.datasets)} datasets, base {exp.base}, "
            f"{len(exp.compare.pairs)} comparisons, in {exp.dir}")

