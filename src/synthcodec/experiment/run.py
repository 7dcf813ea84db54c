"""Running an experiment: its steps are driver Plans over the experiment directory, one run
of `driver.run_plans` with the driver's ledger (RUN/stages.json).

Each step is a pass (a Plan without records) whose work is a sub-run into a folder of the
experiment (rate/, score/, answers/NAME.run, compare/A-vs-B, benchmarks/NAME) or a file it
writes (data/NAME.json, adapters/NAME). Its settings are everything it depends on: the
recipe's section and the hashes of its input files, which are the files the steps before it
wrote, so the plans are made one at a time, each once the steps it reads have finished. A
re-run skips a step whose entry finished with the same settings and whose files exist
(`Plan.skip_if_done`); a changed setting or input redoes that step and, through the hashes,
what reads its files. The sub-runs resume per record, as the commands do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthcodec import __version__
from synthcodec.driver import Plan, Published, RunSummary, Summary, run_plans
from synthcodec.experiment.datasets import DatasetSpec, build_dataset, needs_score_step, source_of
from synthcodec.experiment.recipe import Experiment
from synthcodec.experiment.steps import (
    Benchmarker,
    Say,
    Trainer,
    adapter_hash,
    answer_bench,
    base_model_spec,
    benchmark_model,
    compare_answers,
    dir_fingerprint,
    model_identity,
    rate_pool,
    score_pool,
    train_adapter,
)
from synthcodec.judging.check import silent
from synthcodec.session import Models, RunOptions
from synthcodec.store import RunDir, StageLedger, atomic_writer, hash_file

if TYPE_CHECKING:
    from synthcodec.stages.compare import CompareResult

RUN_CONFIG = {"run": "experiment"}  # the experiment's own run: its steps' settings are per step


def run_experiment(exp: Experiment, *, backends: Mapping[str, Any] | None = None,
                   trainer: Trainer | None = None,
                   benchmarker: Benchmarker | None = None, progress: bool = True,
                   say: Say | None = None,
                   show_comparison: Callable[[CompareResult], None] | None = None
                   ) -> RunSummary:
    """Run (or resume) every step of `exp`; the driver's RunSummary: one Summary per step
    (`skipped` when an earlier run finished it) and, in `passes["report"]`, report.md's path.

    `backends` replaces models by role, for tests: "rate" (the rater), "score" and
    "score:target" (the scorers), "compare" (the pairwise judge), "answer:NAME" (the model
    answering for dataset NAME). `trainer` replaces `train_lora` and `benchmarker`
    `lmeval.run_benchmark` (same signatures). `say` hears each step's line (default:
    nothing; the command passes a printer); `show_comparison` gets each compare step's
    CompareResult (the command prints its tables).
    """
    plans = ExperimentPlans(exp, backends=dict(backends or {}), trainer=trainer,
                            benchmarker=benchmarker, progress=progress, say=say or silent,
                            show_comparison=show_comparison)
    # overwrite: a changed step is redone at once (the experiment owns its sub-runs).
    return run_plans(plans.plans, exp.dir, RUN_CONFIG,
                     RunOptions(no_cache=True, progress=False, overwrite=True),
                     specs={}, ledger={"_experiment": {"name": exp.name}}, say=say or silent)


def data_file(root: Path, name: str) -> Path:
    return root / "data" / f"{name}.json"


def adapter_dir(root: Path, name: str) -> Path:
    return root / "adapters" / name


def answers_file(root: Path, name: str) -> Path:
    return root / "answers" / f"{name}.jsonl"


def compare_dir(root: Path, a: str, b: str) -> Path:
    return root / "compare" / f"{a}-vs-{b}"


def benchmark_dir(root: Path, label: str) -> Path:
    return root / "benchmarks" / label


def info(ledger: StageLedger, step: str) -> dict[str, Any]:
    """What a finished step returned (its stages.json entry's "info")."""
    return dict(ledger.entry(step).get("info") or {})


class ExperimentPlans:
    """The plans of one invocation, made one at a time, and what their steps share: the
    recipe, the test doubles, the input files' hashes (each computed once) and the Summary
    the driver gave each step (for the report's table of steps)."""

    def __init__(self, exp: Experiment, *, backends: dict[str, Any],
                 trainer: Trainer | None, benchmarker: Benchmarker | None,
                 progress: bool, say: Say,
                 show_comparison: Callable[[CompareResult], None] | None) -> None:
        self.exp, self.root = exp, exp.dir
        self.backends, self.trainer, self.benchmarker = backends, trainer, benchmarker
        self.progress, self.say, self.show_comparison = progress, say, show_comparison
        self.hashes: dict[str, str] = {}
        self.done: list[Summary] = []
        self.started = time.monotonic()

    def sha(self, path: str | Path) -> str:
        """The hash of an input file (the pool, the benchmark, the rated rows), once."""
        key = str(Path(path).resolve())
        if key not in self.hashes:
            self.hashes[key] = hash_file(key)
        return self.hashes[key]

    def options(self, limit: int | None = None) -> RunOptions:
        # overwrite: the experiment owns these run directories; a run with the same config
        # resumes, one with a different config (a changed recipe) starts over.
        return RunOptions(concurrency=self.exp.concurrency, cache_path=self.exp.cache,
                          overwrite=True, limit=limit, progress=self.progress)

    def step(self, name: str, settings: Mapping[str, Any], outputs: list[Path],
             work: Callable[[], dict[str, Any]]) -> Plan:
        """A step as a pass for the driver: skipped when done with these settings (and its
        outputs exist), else `work` runs and its result is the ledger entry's "info"."""
        entry: dict[str, Any] = {}

        def run_step(run: RunDir, journal: Any, stopped: bool) -> Published:
            self.say(f"[{name}] running")
            started = time.monotonic()
            entry.update(info=work() or {}, seconds=round(time.monotonic() - started, 3),
                         outputs=[str(p) for p in outputs])
            return Published({})

        return Plan(None, list, 0, name=name, settings=dict(settings), publish=run_step,
                    skip_if_done=outputs, info=lambda: entry, after=self.note)

    def note(self, run: RunDir, journal: Any, summary: Summary) -> None:
        self.done.append(summary)

    def plans(self, models: Models, run: RunDir) -> Iterator[Plan]:
        """Every step in the recipe's order (Experiment.plan names them), each made once the
        steps whose files it reads have finished."""
        exp = self.exp
        if exp.recipe_text is not None:
            with atomic_writer(self.root / "recipe.toml") as fh:
                fh.write(exp.recipe_text)
        if exp.rate is not None:
            yield self.rate_plan()
        if exp.score is not None:
            yield self.score_plan()
        for d in exp.datasets:
            yield self.dataset_plan(d, run.ledger)
        for d in exp.datasets:
            yield self.train_plan(d)
            yield self.answer_plan(d)
        for a, b in exp.compare.pairs:
            yield self.compare_plan(a, b, run.ledger)
        if exp.benchmarks is not None:
            yield from self.benchmark_plans()
        yield self.report_plan(run.ledger)

    def rate_plan(self) -> Plan:
        r = self.exp.rate
        assert r is not None
        settings = {"data": str(Path(r.data).resolve()), "data_sha256": self.sha(r.data),
                    **asdict(r), "prompt": "packaged rate.txt", "version": __version__}
        work = partial(rate_pool, r, self.root / "rate", options=self.options(r.limit),
                       judge_check=self.exp.judge_check_probes, say=self.say,
                       backend=self.backends.get("rate"))
        return self.step("rate", settings, [self.root / "rate" / "output.jsonl"], work)

    def score_plan(self) -> Plan:
        exp, sc = self.exp, self.exp.score
        assert sc is not None
        pool, limit = (exp.rate.data, exp.rate.limit) if exp.rate else (sc.data, sc.limit)
        assert pool is not None
        ifds = needs_score_step(exp.datasets)
        target = base_model_spec(exp.base) if "target_ifd" in ifds else None
        score_backends = {role: self.backends[key] for role, key in (
            ("scorer", "score"), ("target", "score:target")) if key in self.backends}
        settings = {"data": str(Path(pool).resolve()), "data_sha256": self.sha(pool),
                    "limit": limit, **asdict(sc), "signals": ifds, "target": target,
                    "version": __version__}
        work = partial(score_pool, pool, self.root / "score", options=self.options(limit),
                       signals=(*ifds, "length", "random"), model=sc.model, target=target,
                       seed=sc.seed, backends=score_backends)
        return self.step("score", settings, [self.root / "score" / "output.jsonl"], work)

    def dataset_plan(self, d: DatasetSpec, ledger: StageLedger) -> Plan:
        exp, out = self.exp, data_file(self.root, d.name)
        size_of = info(ledger, f"data-{d.random}")["rows"] if isinstance(d.random, str) else None
        run_dir = None if d.path else source_of(
            d, rate_run=self.root / "rate" if exp.rate else None,
            score_run=self.root / "score" if exp.score is not None else None)
        source = Path(d.path) if d.path else run_dir / "output.jsonl"  # type: ignore[operator]
        settings = {**asdict(d), "source": str(source.resolve()),
                    "source_sha256": self.sha(source), "size_of": size_of}
        work = partial(build_dataset, d, out, source=run_dir, size=size_of)
        return self.step(f"data-{d.name}", settings, [out], work)

    def train_plan(self, d: DatasetSpec) -> Plan:
        data, adapter = data_file(self.root, d.name), adapter_dir(self.root, d.name)
        settings = {"base": self.exp.base, "train": asdict(self.exp.train),
                    "data_sha256": hash_file(data)}
        work = partial(train_adapter, data, self.exp.base, adapter, self.exp.train,
                       trainer=self.trainer, progress=self.progress, say=self.say)
        return self.step(f"train-{d.name}", settings, [adapter / "adapter_config.json"], work)

    def answer_plan(self, d: DatasetSpec) -> Plan:
        b, adapter = self.exp.bench, adapter_dir(self.root, d.name)
        out = answers_file(self.root, d.name)
        settings = {"bench": str(Path(b.path).resolve()), "bench_sha256": self.sha(b.path),
                    **asdict(b), "adapter_sha256": adapter_hash(adapter)}
        work = partial(answer_bench, b, d.name, adapter, out,
                       run_dir=self.root / "answers" / f"{d.name}.run",
                       options=self.options(b.limit),
                       backend=self.backends.get(f"answer:{d.name}"))
        return self.step(f"answer-{d.name}", settings, [out], work)

    def compare_plan(self, a: str, b: str, ledger: StageLedger) -> Plan:
        c, run_dir = self.exp.compare, compare_dir(self.root, a, b)
        path_a, path_b = answers_file(self.root, a), answers_file(self.root, b)
        settings = {"judge": c.judge, "judge_max_tokens": c.judge_max_tokens,
                    "reasks": c.reasks, "a": hash_file(path_a), "b": hash_file(path_b)}
        work = partial(compare_answers, path_a, path_b, run_dir, labels=(a, b),
                       bench=info(ledger, f"answer-{a}").get("bench") or "bench",
                       judge=c.judge, judge_max_tokens=c.judge_max_tokens, reasks=c.reasks,
                       options=self.options(), judge_check=self.exp.judge_check_probes,
                       backend=self.backends.get("compare"), say=self.say,
                       show=self.show_comparison)
        return self.step(f"compare-{a}-vs-{b}", settings, [run_dir / "report.json"], work)

    def benchmark_plans(self) -> Iterator[Plan]:
        """lm-evaluation-harness tasks of the base and of every adapter, one step each."""
        from synthcodec.lmeval import harness_version

        exp, spec = self.exp, self.exp.benchmarks
        assert spec is not None
        models = {"base": (base_model_spec(exp.base), model_identity(exp.base))}
        models.update({d.name: (f"hf:{adapter_dir(self.root, d.name)}",
                                adapter_hash(adapter_dir(self.root, d.name)))
                       for d in exp.datasets})
        for label, (model, identity) in models.items():
            run_dir = benchmark_dir(self.root, label)
            settings = {"model": model, "model_sha256": identity, **asdict(spec),
                        "data_dir_sha256": dir_fingerprint(spec.data_dir),
                        "harness": harness_version(), "version": __version__}
            work = partial(benchmark_model, model, spec, run_dir,
                           benchmarker=self.benchmarker, say=self.say)
            yield self.step(f"benchmark-{label}", settings, [run_dir / "summary.json"], work)

    def report_plan(self, ledger: StageLedger) -> Plan:
        """The report: rebuilt on every run (cheap, and it lists what this run skipped)."""
        return Plan(None, list, 0, name="report", publish=partial(self.write_report, ledger),
                    after=lambda run, journal, summary: self.root / "report.md")

    def write_report(self, ledger: StageLedger, run: RunDir, journal: Any,
                     stopped: bool) -> Published:
        from synthcodec.experiment.report import write_report

        exp, root = self.exp, self.root
        names = [d.name for d in exp.datasets]
        path = write_report(
            exp, [(s.stage, s.skipped, float(ledger.entry(s.stage).get("seconds") or 0.0))
                  for s in self.done],
            rate_info=info(ledger, "rate"), score_info=info(ledger, "score"),
            data_info={n: info(ledger, f"data-{n}") for n in names},
            data_paths={n: data_file(root, n) for n in names},
            train_info={n: info(ledger, f"train-{n}") for n in names},
            answer_info={n: info(ledger, f"answer-{n}") for n in names},
            adapters={n: adapter_dir(root, n) for n in names},
            compare_dirs={(a, b): compare_dir(root, a, b) for a, b in exp.compare.pairs},
            wall=time.monotonic() - self.started,
            bench_dirs={label: benchmark_dir(root, label) for label in ["base", *names]}
            if exp.benchmarks is not None else {}, hash_of=self.sha)
        return Published({}, notes=[f"wrote {path}"])
