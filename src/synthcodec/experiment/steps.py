"""The experiment's steps, one function each: it runs the command's own function (`rate_file`,
`score_file`, `train_lora`, `answer_file`, `compare_files`, `lmeval.run_benchmark`) into the
experiment directory and returns what the report needs, which the driver keeps in the
step's stages.json entry ("info"). Building a dataset is datasets.build_dataset. Nothing
here decides whether a step runs: that is the driver's ledger (experiment/run.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthcodec.errors import UserError
from synthcodec.experiment.recipe import BenchSpec, RateSpec, TrainSpec
from synthcodec.io import iter_rows
from synthcodec.judging.check import PRE_CHECK_PROBES
from synthcodec.llm.spec import KIND, find_kind
from synthcodec.store import hash_file, hash_value

if TYPE_CHECKING:
    from synthcodec.lmeval import BenchmarkSettings
    from synthcodec.session import RunOptions
    from synthcodec.stages.compare import CompareResult

Say = Callable[[str], None]
Trainer = Callable[..., Any]  # train_lora's signature
Benchmarker = Callable[..., Any]  # lmeval.run_benchmark's signature


class Interrupted(Exception):
    """A step's run was interrupted (Ctrl-C); the experiment stops, a re-run resumes."""


def check_finished(summary: Any, step: str) -> None:
    """Interrupted when the step's run stopped early (a re-run resumes it)."""
    if summary.interrupted:
        raise Interrupted(f"{step} was interrupted: run the experiment again to resume")


def rate_pool(r: RateSpec, run_dir: Path, *, options: RunOptions, judge_check: int, say: Say,
              backend: Any = None) -> dict[str, Any]:
    """Rate the pool (AlpaGasus) with `synthcodec rate`'s function."""
    from synthcodec.stages.rate import rate_file

    summary = rate_file(r.data, run_dir, judge=r.judge, options=options, dimension=r.dimension,
                        json=r.json, reasks=r.reasks, max_tokens=r.max_tokens,
                        judge_check=judge_check, say=say,
                        backends={"judge": backend} if backend is not None else None)
    check_finished(summary, "rate")
    return {"rated": summary.kept, "failed": summary.failed,
            "requests": summary.stats.requests}


def score_pool(pool: str, run_dir: Path, *, options: RunOptions, signals: tuple[str, ...],
               model: str | None, target: str | None, seed: int,
               backends: Mapping[str, Any] | None) -> dict[str, Any]:
    """Score the pool (IFD, target IFD, length, random) with `synthcodec score`'s function."""
    from synthcodec.stages.score import score_file

    summary = score_file(pool, run_dir, options=options, signals=signals, model=model,
                         target=target, seed=seed, backends=backends or None)
    check_finished(summary, "score")
    return {"scored": summary.kept, "rejected": summary.rejected,
            "failed": summary.failed, "requests": summary.stats.requests}


def train_adapter(data: Path, base: str, adapter: Path, t: TrainSpec, *,
                  trainer: Trainer | None, progress: bool, say: Say) -> dict[str, Any]:
    """Train one LoRA adapter on a dataset (`trainer`: train_lora unless a test gives one)."""
    from synthcodec.progress import StepPrinter
    from synthcodec.train.sft import summary as train_summary

    if trainer is None:
        from synthcodec.train.sft import train_lora as trainer
    printer = StepPrinter()
    try:
        result = trainer(
            data, base, adapter, epochs=t.epochs, max_steps=t.max_steps, learning_rate=t.lr,
            batch_size=t.batch_size, micro_batch_size=t.micro_batch_size, lora_r=t.lora_r,
            lora_alpha=2 * t.lora_r, max_length=t.max_length, seed=t.seed, device=t.device,
            progress=printer if progress else None, log=printer.note)
    finally:
        printer.close()
    say(train_summary(result).splitlines()[0])
    return {"steps": result.steps, "rows": result.n_rows, "skipped": result.skipped,
            "first_loss": result.losses[0] if result.losses else None,
            "final_loss": result.final_loss, "train_tokens": result.train_tokens,
            "seconds": round(result.seconds, 3), "config": result.config}


def answer_bench(b: BenchSpec, name: str, adapter: Path, out: Path, *, run_dir: Path,
                 options: RunOptions, backend: Any = None) -> dict[str, Any]:
    """Answer the benchmark with one adapter (`synthcodec answer`'s function)."""
    from synthcodec.questions import resolve_format
    from synthcodec.stages.answer import answer_file

    fmt = resolve_format(b.path, b.name, {})
    summary, n = answer_file(
        b.path, out, model=f"hf:{adapter}", fmt=fmt, system=b.system,
        temperature=b.temperature, max_tokens=b.max_tokens, run_dir=run_dir, options=options,
        backends={"model": backend} if backend is not None else None)
    check_finished(summary, f"answer-{name}")
    if summary.failed:
        raise UserError(f"answer-{name}: {summary.failed} questions got no answer "
                        f"(reasons in {summary.run_dir / 'failed.jsonl'}); run the "
                        "experiment again to retry them")
    truncated = sum(1 for _, row in iter_rows(out) if row.get("truncated"))
    return {"answers": n, "truncated": truncated, "bench": fmt.name}


def compare_answers(path_a: Path, path_b: Path, run_dir: Path, *, labels: tuple[str, str],
                    bench: str, judge: str, judge_max_tokens: int, reasks: int, options: Any,
                    judge_check: int = PRE_CHECK_PROBES, backend: Any = None,
                    say: Say | None = None,
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


def benchmark_model(model: str, spec: BenchmarkSettings, run_dir: Path, *,
                    benchmarker: Benchmarker | None, say: Say) -> dict[str, Any]:
    """lm-evaluation-harness tasks for one model (the base or an adapter)."""
    if benchmarker is None:
        from synthcodec.lmeval import run_benchmark as benchmarker
    result = benchmarker(model, spec, run_dir, say=say)
    return {"rows": len(result.rows), "seconds": round(result.seconds, 3)}


# --- What a step's settings hash: the identity of models and files ----------------------


def base_model_spec(base: str) -> str:
    """The experiment's `base` as a model spec for `synthcodec benchmark`."""
    kind = find_kind(base)
    if kind is not None and kind.in_process and kind is not KIND["gguf-file"]:  # a spec already
        return base.strip() or "local"
    return f"hf:{base}"  # a .gguf file or a Hugging Face model directory, as `train` takes it


def model_identity(base: str) -> str:
    """Cheap identity of the base model's files (path, size, mtime)."""
    from synthcodec.llm.hfmodels import resolve_base

    try:
        path = Path(resolve_base(base).path)
    except UserError:
        return base
    return dir_fingerprint(str(path)) or base


def dir_fingerprint(path: str | None) -> str | None:
    """A hash of the names, sizes and mtimes of the files under `path` (or of the file)."""
    if not path:
        return None
    root = Path(path)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return hash_value([[str(p.relative_to(root) if p != root else p.name), p.stat().st_size,
                        p.stat().st_mtime_ns] for p in files])


def adapter_hash(adapter: Path) -> str | None:
    """The adapter weights' hash (retraining changes it), None before training."""
    weights = [adapter / n for n in ("adapter_model.safetensors", "adapter_model.bin")]
    for w in weights:
        if w.exists():
            return hash_file(w)
    return hash_file(adapter) if adapter.exists() else None
