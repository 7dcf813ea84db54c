"""`synthcodec answer`: answer every question of a benchmark with one model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from synthcodec.driver import Summary, run_file_stage
from synthcodec.errors import InputError, UserError
from synthcodec.io import FieldSpec
from synthcodec.llm import Request, redact_spec
from synthcodec.questions import BenchFormat, Question, read_questions, resolve_format
from synthcodec.records import META, Record
from synthcodec.session import Models, RunOptions, check_models
from synthcodec.settings import setting
from synthcodec.stages.base import ModelStage, reasoning_fields
from synthcodec.store import atomic_writer, check_writable_dir, write_jsonl


def default_run_dir(output: str | Path) -> Path:
    """The run directory kept beside the answers file, so a re-run resumes and caches."""
    out = Path(output)
    return out.with_name(out.name + ".run")


@dataclass
class AnswerStage(ModelStage):
    """Answer one benchmark question. A long answer cut at max_tokens is still an answer to
    judge (dropping it would leave the question unpaired in `compare`): it is flagged."""

    # Each setting is its `answer` option, recipe key and API keyword (synthcodec.settings).
    model: str = setting("local", "--model", "-m", type=str, help="The model (see below).")
    bench: str = ""
    bench_format: dict[str, Any] | None = None  # from --bench / --field (questions.py)
    system: str | None = setting(None, "--system", type=str,
                                 help="A system message sent with every question.")
    temperature: float = setting(0.0, "--temperature", type=float)
    max_tokens: int = setting(1024, "--max-tokens", type=click.IntRange(1))
    name: str = "answer"

    def __post_init__(self) -> None:
        self.roles = {"model": self.model}

    def config(self) -> dict[str, Any]:
        return {"bench": self.bench, "bench_format": self.bench_format, "system": self.system,
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    async def setup(self, models: Models) -> None:
        self._client = models["model"]

    async def run(self, record: Record) -> Record:
        request = Request.chat(record["question"], system=self.system,
                               temperature=self.temperature, max_tokens=self.max_tokens)
        completion = await self._client.complete(request, allow_truncated=True)
        return {"answer": completion.text.strip(), "model": redact_spec(self.model),
                "bench": (self.bench_format or {}).get("name"),
                "truncated": completion.finish_reason == "length",
                **reasoning_fields(completion.reasoning)}


def answer_file(bench_path: str | Path, output: str | Path, *, model: str, options: RunOptions,
                fmt: BenchFormat | None = None, system: str | None = None,
                temperature: float = 0.0, max_tokens: int = 1024,
                run_dir: str | Path | None = None,
                backends: Mapping[str, Any] | None = None) -> tuple[Summary, int]:
    """Answer every question of `bench_path` with `model` into `output`; what the command runs.

    Returns the run's summary and the number of answers published (0 when interrupted).
    `backends={"model": backend}` replaces the model named by `model`, e.g. a FakeBackend.
    """
    fmt = fmt or resolve_format(bench_path, None, {})
    questions = list(read_questions(bench_path, fmt))  # validates every row before any call
    _check_unique_ids(str(bench_path), [q.id for q in questions])
    run = Path(run_dir) if run_dir else default_run_dir(output)
    if Path(output).is_dir():
        raise UserError(f"{output} is a directory; -o names the answers file")
    if run.exists() and not run.is_dir():
        raise UserError(f"{run} exists and is not a directory (pick another --run-dir)")
    check_models({"model": model}, backends, options)  # all checked before the run dir is created
    options.check_cache()
    check_writable_dir(run, what="run directory")
    check_writable_dir(Path(output).resolve().parent, what="output directory")
    normalized = _write_questions(run, questions)

    stage = AnswerStage(model=model, bench=str(Path(bench_path).resolve()),
                        bench_format=asdict(fmt), system=system, temperature=temperature,
                        max_tokens=max_tokens)
    summary = run_file_stage(
        input_path=normalized, run_dir=run, stage=stage,
        fields=[FieldSpec("question_id", kind=(int, str)), FieldSpec("question"),
                FieldSpec("category", required=False)],
        mapping={}, options=options, backends=backends,
        adds=("answer", "model", "bench", "truncated"))
    if summary.interrupted:
        return summary, 0
    return summary, _publish(run / "output.jsonl", output)


def _write_questions(run: Path, questions: list[Question]) -> Path:
    """The questions, normalized, in the run directory under a content-addressed name.

    One row per question (a Self-Instruct task with several instances is several questions),
    so `run_stage` journals, resumes and limits per question. The name carries the
    content hash: a different benchmark or mapping never overwrites the file of an existing
    run, and the run's config check reports the change.
    """
    body = "".join(json.dumps(q.as_dict(), ensure_ascii=False) + "\n" for q in questions)
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    path = run / f"questions.{digest}.jsonl"
    if not path.exists():
        with atomic_writer(path) as fh:
            fh.write(body)
    return path


def _check_unique_ids(path: str, ids: list[Any]) -> None:
    seen: set[str] = set()
    dupes: list[str] = []
    for qid in ids:
        key = str(qid)
        if key in seen and key not in dupes:
            dupes.append(key)
        seen.add(key)
    if dupes:
        shown = ", ".join(dupes[:10]) + (f" (+{len(dupes) - 10} more)" if len(dupes) > 10 else "")
        raise InputError(path, f"question ids appear more than once: {shown}; map a unique "
                         "column with --field id=COL")


def _publish(source: Path, output: str | Path) -> int:
    """The run's answers as OUTPUT, atomically; question_id is their key, so the run's
    bookkeeping column stays in the run directory."""
    with open(source, encoding="utf-8") as src:
        return write_jsonl(output, ({k: v for k, v in json.loads(line).items() if k != META}
                                    for line in src))
