"""The Python API: what the commands do, callable from a script or a notebook.

    import synthcodec as sc
    rated = sc.rate("alpaca.json", judge="local", limit=20)
    kept = sc.select(rated, min_score=4.5)
    sc.train(kept.path, base="local", output="adapters/kept", max_steps=20)

Data may be a path (JSONL, JSON, CSV, Parquet, a saved Hugging Face dataset), a list of
dicts or a `datasets.Dataset`. Every call writes the same run directory as its command
(`run_dir=`, or one under ./runs named by the input and the options), so calling it again
resumes instead of starting over, and returns the rows as Python objects. A `backend=`
(e.g. `synthcodec.FakeBackend`) replaces the model named by the spec.

The functions work inside a running event loop (Jupyter): the run then goes on a worker
thread. In async code, await the `a`-prefixed variants (`await sc.arate(...)`), which run
the same thing off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from synthcodec.driver import Summary
from synthcodec.errors import UserError
from synthcodec.io import iter_rows, json_safe
from synthcodec.session import RunOptions
from synthcodec.store import atomic_writer, dumps, hash_value, read_json

Data = str | Path | Iterable[Mapping[str, Any]]
P = ParamSpec("P")
R = TypeVar("R")

_RUN_OPTIONS = {f for f in RunOptions.__dataclass_fields__}
# Keywords that were renamed (CHANGELOG.md): an old name gets a one-line hint, not a puzzle.
_RENAMED = {"json_mode": "json", "judge_json": "json", "as_json": "json",
            "json_reasks": "reasks"}
# Rows given as a list of dicts or a Dataset are written here, named by their content.
ROWS_FOLDER = Path(tempfile.gettempdir()) / "synthcodec-inputs"


@dataclass
class RunResult:
    """A finished run: its rows, read back from the run directory, and its summary."""

    run_dir: Path
    summary: Summary
    rows: list[dict[str, Any]] = field(default_factory=list)  # kept (output.jsonl)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """The output file, to hand to the next command (select, train, compare)."""
        return self.run_dir / "output.jsonl"

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Any:
        return iter(self.rows)


@dataclass
class Selected:
    """The rows `select` kept, where it wrote them, and its summary."""

    path: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Generated:
    """The kept instruction-response pairs of a CodecLM run, and its summary."""

    run_dir: Path
    pairs: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    summary: dict[str, Any] | None
    failed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Comparison:
    """The pairwise report (win/tie/lose, CRR, ...) and the per-question verdicts."""

    run_dir: Path
    report: dict[str, Any]
    verdicts: list[dict[str, Any]]
    exit_code: int


# ------------------------------------------------------------------------------ helpers

def _input_path(data: Data) -> Path:
    """A path as given; rows (a list of dicts, a Dataset) as a JSONL file named by content,
    so the same rows give the same path and a second call resumes the same run."""
    if isinstance(data, (str, Path)):
        return Path(data)
    if isinstance(data, Mapping):
        raise UserError("data must be a path, a list of dicts or a datasets.Dataset, not one dict")
    lines = []
    for i, row in enumerate(data, 1):
        if not isinstance(row, Mapping):
            raise UserError(f"data row {i} is a {type(row).__name__}, not a dict")
        try:
            lines.append(dumps(json_safe(dict(row))))
        except ValueError as exc:  # NaN / Infinity: not JSON (the file readers refuse them)
            raise UserError(f"data row {i}: {exc}") from None
    body = "\n".join(lines) + "\n"
    digest = hash_value(body)[:16]
    folder = ROWS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rows-{digest}.jsonl"
    if not path.exists():
        with atomic_writer(path) as fh:
            fh.write(body)
    return path


def _run_dir(run_dir: str | Path | None, command: str, path: Path, settings: Mapping[str, Any]
             ) -> Path:
    """The run directory: given, or one under ./runs named by the input and the settings.

    The input is named by its path, size and modification time, not by hashing its content
    (the run hashes it once anyway): an edited file gets a new directory instead of a
    "different configuration" refusal."""
    if run_dir is not None:
        return Path(run_dir)
    if path.parent == ROWS_FOLDER:  # rows given in Python: the name is their content hash
        name: Any = path.name
    else:
        stat = path.stat() if path.exists() else None
        name = [str(path.resolve()), stat and stat.st_size, stat and stat.st_mtime_ns]
    key = hash_value({"input": name, "settings": settings})
    return Path("runs") / f"{command}-{key[:12]}"


def _options(kwargs: dict[str, Any]) -> RunOptions:
    """RunOptions from keyword arguments (concurrency, cache_path, no_cache, limit, ...);
    progress is off unless asked for."""
    unknown = sorted(set(kwargs) - _RUN_OPTIONS)
    renamed = [f"{old}= is now {_RENAMED[old]}=" for old in unknown if old in _RENAMED]
    if renamed:
        raise TypeError(f"{'; '.join(renamed)} (CHANGELOG.md)")
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}; run options are "
                        + ", ".join(sorted(_RUN_OPTIONS)))
    kwargs.setdefault("progress", False)
    return RunOptions(**kwargs)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_rows(path)] if path.exists() and path.stat().st_size else []


def _result(summary: Summary, rows: Path | None = None) -> RunResult:
    """The run's rows (`rows`: the file the kept rows are read from, else RUN/output.jsonl)."""
    run = summary.run_dir
    return RunResult(run, summary, _rows(rows or run / "output.jsonl"),
                     _rows(run / "rejected.jsonl"), _rows(run / "failed.jsonl"))


def _async(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(fn, *args, **kwargs)

    wrapper.__doc__ = f"Async variant of `{fn.__name__}` (runs it off the event loop)."
    return wrapper


# ---------------------------------------------------------------------------- the calls

def complete(data: Data, *, model: str = "local", prompt_field: str = "prompt",
             system: str | None = None, temperature: float = 0.0, max_tokens: int = 512,
             allow_truncated: bool = True, output_field: str = "response",
             json: bool = False, json_schema: Mapping[str, Any] | None = None,
             keep_reasoning: bool = False, run_dir: str | Path | None = None,
             backend: Any = None, **run_options: Any) -> RunResult:
    """Answer each row's prompt with `model` (what `synthcodec complete` does).

    A reasoning model's trace is kept out of the answer (in `_synthcodec.reasoning`), or with
    `keep_reasoning=True` in a `reasoning` column.

    `json=True` asks for a JSON object, `json_schema=` for one that validates against
    the schema; the row then gets the parsed object, and replies that never validate are in
    `.failed` with the reason.
    """
    from synthcodec.stages.complete import complete_file

    path = _input_path(data)
    settings = dict(model=model, prompt_field=prompt_field, system=system,
                    temperature=temperature, max_tokens=max_tokens,
                    allow_truncated=allow_truncated, output_field=output_field,
                    json=json, json_schema=json_schema,
                    **({"keep_reasoning": True} if keep_reasoning else {}))
    summary = complete_file(path, _run_dir(run_dir, "complete", path, settings), model=model,
                            mapping={"prompt": prompt_field} if prompt_field != "prompt" else {},
                            system=system, temperature=temperature, max_tokens=max_tokens,
                            allow_truncated=allow_truncated, output_field=output_field,
                            json=json, keep_reasoning=keep_reasoning,
                            json_schema=dict(json_schema) if json_schema is not None else None,
                            options=_options(run_options),
                            backends={"model": backend} if backend is not None else None)
    return _result(summary)


def rate(data: Data, *, judge: str = "local", dimension: str = "accuracy",
         fields: Mapping[str, str] | None = None, json: bool | None = None,
         reasks: int = 2, max_tokens: int = 256, run_dir: str | Path | None = None,
         scores: str = "text", judge_check: int | None = None, backend: Any = None,
         **run_options: Any) -> RunResult:
    """Rate every (instruction, input, response) row 0–5 with `judge` (AlpaGasus).

    `fields` maps our names to your columns, e.g. {"response": "answer"} (default: Alpaca's
    `output` is the response). Rows the judge could not rate are in `.failed`. `scores`:
    "text" or "logprobs"; `judge_check`: probes per kind of the judge check first (None:
    the command's default, 0: none), its card in RUN/judge_card.json.
    """
    from synthcodec.stages.rate import field_mapping, rate_file

    path = _input_path(data)
    mapping = field_mapping([f"{k}={v}" for k, v in (fields or {}).items()])
    settings = dict(judge=judge, dimension=dimension, fields=mapping, json=json,
                    reasks=reasks, max_tokens=max_tokens,
                    **({"scores": scores} if scores != "text" else {}))
    summary = rate_file(path, _run_dir(run_dir, "rate", path, settings), judge=judge,
                        dimension=dimension, mapping=mapping, json=json, reasks=reasks,
                        max_tokens=max_tokens, options=_options(run_options), scores=scores,
                        **_check(judge_check),
                        backends={"judge": backend} if backend is not None else None)
    return _result(summary)


def score(data: Data, *, signals: str | tuple[str, ...] = ("ifd", "length", "random"),
          model: str = "local", target: str | None = None, seed: int = 0,
          fields: Mapping[str, str] | None = None, run_dir: str | Path | None = None,
          backends: Mapping[str, Any] | None = None, **run_options: Any) -> RunResult:
    """Add selection signals to every (instruction, input, response) row: `ifd` (by `model`),
    `target_ifd` (by `target`, the model to tune), `length`, a seeded `random` key.
    `backends={"scorer": ..., "target": ...}` replaces the models (e.g. FakeBackend)."""
    from synthcodec.stages.rate import field_mapping
    from synthcodec.stages.score import parse_signals, score_file

    path = _input_path(data)
    mapping = field_mapping([f"{k}={v}" for k, v in (fields or {}).items()])
    chosen = parse_signals(signals)
    settings = dict(signals=list(chosen), model=model, target=target, seed=seed, fields=mapping)
    summary = score_file(path, _run_dir(run_dir, "score", path, settings), signals=chosen,
                         model=model, target=target, seed=seed, mapping=mapping,
                         options=_options(run_options), backends=backends)
    return _result(summary)


def select(rated: RunResult | str | Path, *, by: str | None = None, top: int | None = None,
           frac: float | None = None, min: float | None = None,  # noqa: A002
           max: float | None = None, lowest: bool = False,  # noqa: A002
           min_score: float | None = None, random: int | None = None, seed: int | None = None,
           diverse: str | None = None, embed_model: str = "local", embed_backend: Any = None,
           output: str | Path | None = None, format: str = "jsonl") -> Selected:  # noqa: A002
    """Keep the rows of a `rate` or `score` result (or run directory, or file) that a signal
    ranks best (`by`: score, ifd, target_ifd, length, random or a column; default score ≥ 4.5).
    `min_score=T` is `by="score", min=T`; `random=N` is `by="random", top=N`."""
    from synthcodec.stages.select import embedder, select_rows
    from synthcodec.stages.select_rules import rule_from_options

    source = rated.run_dir if isinstance(rated, RunResult) else Path(rated)
    rule = rule_from_options(by, top, frac, min, max, lowest, min_score, random, seed,
                             diverse, 0.7, None).checked()
    if output is None:
        base = source if source.is_dir() else source.parent
        name = "-".join(str(x) for x in (rule.by, rule.top, rule.frac, rule.min, rule.max,
                                         rule.seed, rule.diverse) if x is not None)
        output = base / f"selected-{name}.jsonl"
    embed = (embedder(embed_model, backend=embed_backend) if rule.diverse == "kcenter"
             else None)
    sel = select_rows(source, output, rule, fmt=format, embed=embed)
    # The rows as written, in any format (alpaca/sharegpt: a JSON array; hf: a saved dataset).
    return Selected(Path(output), _rows(Path(output)), sel.summary)


def answer(bench: str | Path, *, model: str = "local", output: str | Path | None = None,
           system: str | None = None, temperature: float = 0.0, max_tokens: int = 1024,
           backend: Any = None, **run_options: Any) -> RunResult:
    """Answer every question of a benchmark file (Vicuna, Self-Instruct, WizardLM, Koala)."""
    from synthcodec.stages.answer import answer_file

    settings = dict(model=model, system=system, temperature=temperature, max_tokens=max_tokens)
    out = Path(output) if output is not None else (
        _run_dir(None, "answer", Path(bench), settings) / "answers.jsonl")
    summary, _ = answer_file(bench, out, model=model, system=system, temperature=temperature,
                             max_tokens=max_tokens, options=_options(run_options),
                             backends={"model": backend} if backend is not None else None)
    return _result(summary, out)  # rows: the answers file (question_id, question, answer, ...)


def compare(a: str | Path, b: str | Path, *, judge: str = "local",
            run_dir: str | Path | None = None, key: str | None = None,
            label_a: str | None = None, label_b: str | None = None,
            json: bool | None = None, judge_max_tokens: int = 512, reasks: int = 2,
            scores: str = "text", judge_check: int | None = None, backend: Any = None,
            **run_options: Any) -> Comparison:
    """Judge A's answers against B's in both orders (win/tie/lose, CRR; wins are A's);
    `scores` and `judge_check` as for `rate` (the card also in the report)."""
    from synthcodec.stages.compare import compare_files

    settings = dict(b=str(b), judge=judge, key=key, json=json,
                    judge_max_tokens=judge_max_tokens, reasks=reasks,
                    **({"scores": scores} if scores != "text" else {}))
    run = Path(run_dir) if run_dir is not None else _run_dir(None, "compare", Path(a), settings)
    result = compare_files((str(a), str(b)), run_dir=run, options=_options(run_options),
                           judge=judge, key=key, label_a=label_a, label_b=label_b,
                           json=json, judge_max_tokens=judge_max_tokens,
                           reasks=reasks, scores=scores, **_check(judge_check),
                           backends={"judge": backend} if backend is not None else None)
    return Comparison(run, read_json(run / "report.json", {}), _rows(run / "output.jsonl"),
                      result.exit_code)


def generate(seeds: Data, *, strong: str = "local", target: str = "local", n: int = 2000,
             run_dir: str | Path | None = None, oversample: float = 2.0,
             fields: Mapping[str, str] | None = None, backends: Mapping[str, Any] | None = None,
             codec: Mapping[str, Any] | None = None, judge_check: int | None = None,
             **run_options: Any) -> Generated:
    """CodecLM: seeds → metadata → instructions → Self-Rubrics → Contrastive Filtering.

    `codec` holds the CodecLM settings by name (pool_size, per_metadata, n_rubrics,
    max_iterations, theta, temperature, max_tokens, judge_max_tokens, ...: see
    `synthcodec.codeclm.config.CodecConfig`); `backends={"strong": ..., "target": ...}`.
    """
    from synthcodec.codeclm.config import CodecConfig
    from synthcodec.codeclm.pipeline import generate as run_generate

    path = _input_path(seeds)
    cfg = CodecConfig(**dict(codec or {}))
    settings = dict(strong=strong, target=target, n=n, oversample=oversample,
                    fields=dict(fields or {}), codec=dict(codec or {}))
    run = _run_dir(run_dir, "generate", path, settings)
    result = run_generate(seeds=str(path), run_dir=run, strong=strong, target=target, n=n,
                          cfg=cfg, options=_options(run_options), mapping=dict(fields or {}),
                          oversample=oversample, backends=backends, **_check(judge_check))
    return Generated(run, _rows(run / "output.jsonl"), _rows(run / "rejected.jsonl"),
                     result.report, _rows(run / "failed.jsonl"))


def judge_check(data: str | Path | list[str | Path], *, judge: str | None = None,
                output: str | Path, kind: str | None = None, probes: int | None = None,
                labels: str | Path | None = None, backend: Any = None,
                **run_options: Any) -> Any:
    """The judge card of `judge` (a judging.check.card.JudgeCard) on DATA: an instruction file
    with responses, two answer files [A, B], or a rate/compare run directory; written to
    OUTPUT/judge_card.{json,md}. `kind`: "rater" or "pairwise" (default: by the data)."""
    from synthcodec.judging.check import DEFAULT_PROBES
    from synthcodec.judging.check.files import check_files

    paths = [str(p) for p in data] if isinstance(data, list) else [str(data)]
    return check_files(paths, output, judge=judge, options=_options(run_options), role=kind,
                       per_kind=probes or DEFAULT_PROBES,
                       labels=str(labels) if labels is not None else None,
                       backends={"judge": backend} if backend is not None else None)


def _check(judge_check: int | None) -> dict[str, int]:
    return {} if judge_check is None else {"judge_check": judge_check}


def train(data: Data, *, base: str = "local", output: str | Path, **settings: Any) -> Any:
    """LoRA-tune `base` on instruction/input/output rows (or chat `messages`); needs the
    `train` extra. `settings`: epochs, max_steps, learning_rate, batch_size, lora_r, seed, ...
    Returns the training result (the adapter is in `output`: use it as `hf:OUTPUT`)."""
    from synthcodec.train import train_lora

    return train_lora(_input_path(data), base, output, **settings)


acomplete = _async(complete)
arate = _async(rate)
ascore = _async(score)
aselect = _async(select)
aanswer = _async(answer)
acompare = _async(compare)
agenerate = _async(generate)
atrain = _async(train)

__all__ = [
    "Comparison", "Generated", "RunResult", "Selected",
    "aanswer", "acompare", "acomplete", "agenerate", "answer", "arate", "ascore", "aselect",
    "atrain", "compare", "complete", "generate", "rate", "score", "select", "train",
]
