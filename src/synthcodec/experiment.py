"""One recipe that tests the papers' claim: build datasets, train one LoRA adapter on each,
answer a benchmark with each adapter, judge them pairwise, and write one report.

One module although over 400 lines, for now: the recipe's typed sections and the steps that
run them change together; issue 10 (recipes parse into the stages' own configuration, the
experiment runs on run_stage) will move both apart. The report is experiment_report.py.

    [experiment]                 # synthcodec run experiment.toml
    dir = "runs/experiment"
    base = "local"
    [experiment.rate]            # AlpaGasus rating of a pool of rows
    data = "../shared/data/alpaca/random_9k.json"
    limit = 60
    [experiment.datasets.filtered]
    top = 24                     # or min_score = 4.5, or path = "kept.json"
    [experiment.datasets.random]
    random = "filtered"          # the same number of rows as `filtered`, at random
    [experiment.train]
    max_steps = 12
    [experiment.bench]
    path = "../shared/data/bench/vicuna_test_set.jsonl"
    [experiment.compare]
    judge = "local"
    # optional: lm-evaluation-harness tasks for the base and every adapter
    # benchmarks = ["mmlu", "bbh"]   + [experiment.benchmark_settings] limit/shots/data_dir

Every step reuses the commands' own functions (`rate_file`, `score_file`, `select_rows`,
`train_lora`, `answer_file`, `compare_files`) and writes into the experiment directory. After
it finishes, a step is recorded in `stages.json` (store.StageLedger, the resume scheme of
`generate` too) with the hash of everything it depends on (its settings and the content of
its input files); a re-run skips a step recorded as finished with the same hash and whose
outputs exist, so an interrupted experiment resumes at the step it was in (and the
rate/score/answer/compare runs inside it resume per record, like the commands). A changed
setting or input redoes that step and, through the content hashes, everything after it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthcodec import __version__
from synthcodec.errors import UserError
from synthcodec.experiment_datasets import (
    DatasetSpec,
    ScoreSpec,
    build_dataset,
    needs_score_step,
    parse_bakeoff,
    parse_dataset,
    source_of,
)
from synthcodec.io import iter_rows
from synthcodec.judging.check import PRE_CHECK_PROBES
from synthcodec.llm.spec import KIND, find_kind
from synthcodec.lmeval import BenchmarkSettings
from synthcodec.store import STAGES_FILE, StageLedger, atomic_writer, hash_file, hash_value

if TYPE_CHECKING:
    from synthcodec.stages.compare import CompareResult


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
                   recipe_text: str | None = None) -> "Experiment":
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


# --- Steps (recorded in stages.json) ----------------------------------------------------


@dataclass
class StepLog:
    name: str
    status: str  # "done" (ran now) or "skipped" (finished by an earlier run)
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


class Steps:
    """Runs a step unless the run's ledger (store.StageLedger: RUN/stages.json, the resume
    scheme `generate` uses too) says it finished with the same settings and inputs."""

    def __init__(self, root: Path, say: Callable[[str], None]) -> None:
        self.root = root
        self.say = say
        self.log: list[StepLog] = []
        self.ledger = StageLedger(root / STAGES_FILE)

    def run(self, name: str, config: Mapping[str, Any], outputs: list[Path],
            fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Skip when done with this config, else run `fn` and record it as finished."""
        config = dict(config)  # hashes of the input files' content are part of it
        old = self.ledger.entry(name)
        digest = hash_value(config)[:12]
        if (old.get("finished") and self.ledger.change(name, config) is None
                and all(p.exists() for p in outputs)):
            self.say(f"[{name}] done earlier (config {digest}), skipped")
            self.log.append(StepLog(name, "skipped", float(old.get("seconds", 0.0)),
                                    old.get("info") or {}))
            return old.get("info") or {}
        if old and not old.get("finished"):
            self.say(f"[{name}] did not finish last time: running it again")
        elif old:
            self.say(f"[{name}] settings or inputs changed since the last run: redoing it")
        self.ledger.start(name, config, fresh=True)  # not finished until fn returns
        self.say(f"[{name}] running")
        started = time.monotonic()
        info = fn() or {}
        seconds = time.monotonic() - started
        self.ledger.finish(name, outputs=[str(p) for p in outputs], seconds=round(seconds, 3),
                           finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), info=info)
        self.log.append(StepLog(name, "done", seconds, info))
        self.say(f"[{name}] done in {seconds:.1f}s")
        return info


class Interrupted(Exception):
    """A step's run was interrupted (Ctrl-C); the experiment stops, a re-run resumes."""


# --- Running ----------------------------------------------------------------------------

Trainer = Callable[..., Any]  # train_lora's signature
Benchmarker = Callable[..., Any]  # lmeval.run_benchmark's signature


def run_experiment(exp: Experiment, *, backends: Mapping[str, Any] | None = None,
                   trainer: Trainer | None = None, benchmarker: Benchmarker | None = None,
                   progress: bool = True, say: Callable[[str], None] | None = None,
                   show_comparison: Callable[[CompareResult], None] | None = None) -> Path:
    """Run (or resume) every step of `exp`; returns the path of report.md.

    `backends` replaces models by role, for tests: "rate" (the rater), "compare" (the
    pairwise judge), "answer:NAME" (the model answering for dataset NAME). `trainer`
    replaces `train_lora` and `benchmarker` `lmeval.run_benchmark` (same signatures).
    `say` hears the steps' progress lines (default: stderr); `show_comparison` gets each
    compare step's CompareResult (the command prints its tables).
    """
    backends = dict(backends or {})
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    root = exp.dir
    root.mkdir(parents=True, exist_ok=True)
    if exp.recipe_text is not None:
        with atomic_writer(root / "recipe.toml") as fh:
            fh.write(exp.recipe_text)
    steps = Steps(root, say)
    started = time.monotonic()
    hashed: dict[str, str] = {}

    def sha(path: str | Path) -> str:
        """The hash of an input file (the pool, the benchmark, the rated rows), once."""
        key = str(Path(path).resolve())
        if key not in hashed:
            hashed[key] = hash_file(key)
        return hashed[key]
    from synthcodec.session import RunOptions

    def options(limit: int | None = None) -> RunOptions:
        # overwrite: the experiment owns these run directories; a run with the same config
        # resumes, one with a different config (a changed recipe) starts over.
        return RunOptions(concurrency=exp.concurrency, cache_path=exp.cache, overwrite=True,
                          limit=limit, progress=progress)

    # 1. Rate the pool (AlpaGasus).
    rate_out = root / "rate" / "output.jsonl"
    rate_info: dict[str, Any] = {}
    if exp.rate is not None:
        r = exp.rate

        def do_rate() -> dict[str, Any]:
            from synthcodec.stages.rate import rate_file

            summary = rate_file(r.data, root / "rate", judge=r.judge, options=options(r.limit),
                                dimension=r.dimension,
                                json=r.json, reasks=r.reasks, max_tokens=r.max_tokens,
                                judge_check=exp.judge_check_probes, say=say,
                                backends={"judge": backends["rate"]} if "rate" in backends
                                else None)
            _check(summary, "rate")
            return {"rated": summary.kept, "failed": summary.failed,
                    "requests": summary.stats.requests}

        rate_info = steps.run("rate", {
            "data": str(Path(r.data).resolve()), "data_sha256": sha(r.data),
            **asdict(r), "prompt": "packaged rate.txt", "version": __version__,
        }, [rate_out], do_rate)

    # 2. Score the pool (IFD, target IFD, length, random) when a dataset selects by them.
    score_run = root / "score" if exp.score is not None else None
    if exp.score is not None:
        sc = exp.score
        pool, limit = (exp.rate.data, exp.rate.limit) if exp.rate else (sc.data, sc.limit)
        assert pool is not None
        ifds = needs_score_step(exp.datasets)
        target = _base_model_spec(exp.base) if "target_ifd" in ifds else None
        score_backends = {role: backends[key] for role, key in (("scorer", "score"),
                                                                ("target", "score:target"))
                          if key in backends}

        def do_score() -> dict[str, Any]:
            from synthcodec.stages.score import score_file

            summary = score_file(pool, root / "score", options=options(limit),
                                 signals=(*ifds, "length", "random"), model=sc.model,
                                 target=target, seed=sc.seed, backends=score_backends or None)
            _check(summary, "score")
            return {"scored": summary.kept, "rejected": summary.rejected,
                    "failed": summary.failed, "requests": summary.stats.requests}

        score_info = steps.run("score", {
            "data": str(Path(pool).resolve()), "data_sha256": sha(pool), "limit": limit,
            **asdict(sc), "signals": ifds, "target": target, "version": __version__,
        }, [score_run / "output.jsonl"], do_score)
    else:
        score_info = {}

    # 3. Build the datasets.
    data_paths: dict[str, Path] = {}
    data_info: dict[str, dict[str, Any]] = {}
    for d in exp.datasets:
        out = root / "data" / f"{d.name}.json"
        data_paths[d.name] = out
        size_of = data_info[d.random]["rows"] if isinstance(d.random, str) else None
        run_dir = None if d.path else source_of(
            d, rate_run=root / "rate" if exp.rate else None, score_run=score_run)
        source = Path(d.path) if d.path else run_dir / "output.jsonl"  # type: ignore[operator]
        data_info[d.name] = steps.run(f"data-{d.name}", {
            **asdict(d), "source": str(source.resolve()), "source_sha256": sha(source),
            "size_of": size_of,
        }, [out], lambda d=d, out=out, size_of=size_of, run_dir=run_dir: build_dataset(
            d, out, source=run_dir, size=size_of))

    # 4. Train one adapter per dataset; 5. answer the benchmark with it.
    train_fn = trainer
    adapters: dict[str, Path] = {}
    answers: dict[str, Path] = {}
    train_info: dict[str, dict[str, Any]] = {}
    answer_info: dict[str, dict[str, Any]] = {}
    t = exp.train
    for d in exp.datasets:
        adapter = root / "adapters" / d.name
        adapters[d.name] = adapter

        def do_train(d: DatasetSpec = d, adapter: Path = adapter) -> dict[str, Any]:
            nonlocal train_fn
            if train_fn is None:
                from synthcodec.train.sft import train_lora
                train_fn = train_lora
            from synthcodec.progress import StepPrinter

            printer = StepPrinter()
            try:
                result = train_fn(
                    data_paths[d.name], exp.base, adapter, epochs=t.epochs,
                    max_steps=t.max_steps, learning_rate=t.lr, batch_size=t.batch_size,
                    micro_batch_size=t.micro_batch_size, lora_r=t.lora_r,
                    lora_alpha=2 * t.lora_r, max_length=t.max_length, seed=t.seed,
                    device=t.device, progress=printer if progress else None, log=printer.note)
            finally:
                printer.close()
            from synthcodec.train.sft import summary as train_summary

            say(train_summary(result).splitlines()[0])
            return {"steps": result.steps, "rows": result.n_rows, "skipped": result.skipped,
                    "first_loss": result.losses[0] if result.losses else None,
                    "final_loss": result.final_loss, "train_tokens": result.train_tokens,
                    "seconds": round(result.seconds, 3), "config": result.config}

        train_info[d.name] = steps.run(f"train-{d.name}", {
            "base": exp.base, "train": asdict(t), "data_sha256": hash_file(data_paths[d.name]),
        }, [adapter / "adapter_config.json"], do_train)

        out = root / "answers" / f"{d.name}.jsonl"
        answers[d.name] = out
        b = exp.bench

        def do_answer(d: DatasetSpec = d, adapter: Path = adapter, out: Path = out
                      ) -> dict[str, Any]:
            from synthcodec.questions import resolve_format
            from synthcodec.stages.answer import answer_file

            fmt = resolve_format(b.path, b.name, {})
            role = f"answer:{d.name}"
            summary, n = answer_file(
                b.path, out, model=f"hf:{adapter}", fmt=fmt, system=b.system,
                temperature=b.temperature, max_tokens=b.max_tokens,
                run_dir=root / "answers" / f"{d.name}.run", options=options(b.limit),
                backends={"model": backends[role]} if role in backends else None)
            _check(summary, f"answer-{d.name}")
            if summary.failed:
                raise UserError(f"answer-{d.name}: {summary.failed} questions got no answer "
                                f"(reasons in {summary.run_dir / 'failed.jsonl'}); run the "
                                "experiment again to retry them")
            truncated = sum(1 for _, row in iter_rows(out) if row.get("truncated"))
            return {"answers": n, "truncated": truncated, "bench": fmt.name}

        answer_info[d.name] = steps.run(f"answer-{d.name}", {
            "bench": str(Path(b.path).resolve()), "bench_sha256": sha(b.path),
            **asdict(b), "adapter_sha256": _adapter_hash(adapter),
        }, [out], do_answer)

    # 6. Compare every pair, both orders.
    compare_dirs: dict[tuple[str, str], Path] = {}
    c = exp.compare
    for a, bb in c.pairs:
        run_dir = root / "compare" / f"{a}-vs-{bb}"
        compare_dirs[(a, bb)] = run_dir

        def do_compare(a: str = a, bb: str = bb, run_dir: Path = run_dir) -> dict[str, Any]:
            return compare_answers(answers[a], answers[bb], run_dir, labels=(a, bb),
                                   bench=answer_info[a].get("bench") or "bench",
                                   judge=c.judge, judge_max_tokens=c.judge_max_tokens,
                                   reasks=c.reasks, options=options(),
                                   judge_check=exp.judge_check_probes,
                                   backend=backends.get("compare"), say=say,
                                   show=show_comparison)

        steps.run(f"compare-{a}-vs-{bb}", {
            "judge": c.judge, "judge_max_tokens": c.judge_max_tokens, "reasks": c.reasks,
            "a": hash_file(answers[a]), "b": hash_file(answers[bb]),
        }, [run_dir / "report.json"], do_compare)

    # 7. Standard benchmarks (lm-evaluation-harness) of the base and every adapter.
    bench_dirs: dict[str, Path] = {}
    if exp.benchmarks is not None:
        spec = exp.benchmarks
        run_bench = benchmarker
        if run_bench is None:
            from synthcodec.lmeval import run_benchmark as run_bench
        models = {"base": _base_model_spec(exp.base)}
        models.update({d.name: f"hf:{adapters[d.name]}" for d in exp.datasets})
        identity = {"base": _model_identity(exp.base)}
        identity.update({d.name: _adapter_hash(adapters[d.name]) for d in exp.datasets})
        from synthcodec.lmeval import harness_version

        for label, model in models.items():
            run_dir = root / "benchmarks" / label
            bench_dirs[label] = run_dir

            def do_bench(model: str = model, run_dir: Path = run_dir) -> dict[str, Any]:
                result = run_bench(model, spec, run_dir, say=say)
                return {"rows": len(result.rows), "seconds": round(result.seconds, 3)}

            steps.run(f"benchmark-{label}", {
                "model": model, "model_sha256": identity[label], **asdict(spec),
                "data_dir_sha256": _dir_fingerprint(spec.data_dir),
                "harness": harness_version(), "version": __version__,
            }, [run_dir / "summary.json"], do_bench)

    # 8. The report (always rebuilt: cheap, and it lists what this run skipped).
    from synthcodec.experiment_report import write_report

    path = write_report(exp, steps.log, rate_info=rate_info, score_info=score_info,
                        data_info=data_info, data_paths=data_paths,
                        train_info=train_info, answer_info=answer_info, adapters=adapters,
                        compare_dirs=compare_dirs, wall=time.monotonic() - started,
                        bench_dirs=bench_dirs, hash_of=sha)
    say(f"wrote {path}")
    return path


def _check(summary: Any, step: str) -> None:
    if summary.interrupted:
        raise Interrupted(f"{step} was interrupted: run the experiment again to resume")


def _base_model_spec(base: str) -> str:
    """The experiment's `base` as a model spec for `synthcodec benchmark`."""
    kind = find_kind(base)
    if kind is not None and kind.in_process and kind is not KIND["gguf-file"]:  # a spec already
        return base.strip() or "local"
    return f"hf:{base}"  # a .gguf file or a Hugging Face model directory, as `train` takes it


def _model_identity(base: str) -> str:
    """Cheap identity of the base model's files (path, size, mtime)."""
    from synthcodec.llm.hfmodels import resolve_base

    try:
        path = Path(resolve_base(base).path)
    except UserError:
        return base
    return _dir_fingerprint(str(path)) or base


def _dir_fingerprint(path: str | None) -> str | None:
    """A hash of the names, sizes and mtimes of the files under `path` (or of the file)."""
    if not path:
        return None
    root = Path(path)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return hash_value([[str(p.relative_to(root) if p != root else p.name), p.stat().st_size,
                        p.stat().st_mtime_ns] for p in files])


def _adapter_hash(adapter: Path) -> str | None:
    """The adapter weights' hash (retraining changes it), None before training."""
    weights = [adapter / n for n in ("adapter_model.safetensors", "adapter_model.bin")]
    for w in weights:
        if w.exists():
            return hash_file(w)
    return hash_file(adapter) if adapter.exists() else None


# --- Comparing --------------------------------------------------------------------------


def compare_answers(path_a: Path, path_b: Path, run_dir: Path, *, labels: tuple[str, str],
                    bench: str, judge: str, judge_max_tokens: int, reasks: int, options: Any,
                    judge_check: int = PRE_CHECK_PROBES, backend: Any = None,
                    say: Callable[[str], None] | None = None,
                    show: Callable[[CompareResult], None] | None = None) -> dict[str, Any]:
    """`synthcodec compare A B` through its own function (`say`: its judge check's lines,
    `show`: what to do with its CompareResult); the report's numbers."""
    from synthcodec.session import EXIT_INTERRUPTED
    from synthcodec.stages.compare import compare_files

    result = compare_files((str(path_a), str(path_b)), run_dir=run_dir, options=options,
                           name=bench, judge=judge, label_a=labels[0], label_b=labels[1],
                           judge_max_tokens=judge_max_tokens, reasks=reasks,
                           judge_check=judge_check, say=say,
                           backends={"judge": backend} if backend is not None else None)
    if show is not None:
        show(result)
    if result.exit_code == EXIT_INTERRUPTED:
        raise Interrupted(f"compare {labels[0]} vs {labels[1]} was interrupted: run the "
                          "experiment again to resume")
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    return {"pairs": report["pairs"], "failed": report["failed"], "total": report["total"]}


def describe(exp: Experiment) -> str:
    return (f"{exp.name}: {len(exp.datasets)} datasets, base {exp.base}, "
            f"{len(exp.compare.pairs)} comparisons, in {exp.dir}")


os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch's first import
