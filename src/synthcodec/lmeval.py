"""Standard benchmarks (MMLU, BBH, DROP, HumanEval, ...) through EleutherAI's
lm-evaluation-harness (`lm_eval`), for `synthcodec benchmark` and the experiment recipe.

One module although over 400 lines: it is the one place that knows lm_eval's internals
(model arguments, its task manager and task configs, its result layout), so a change of
lm_eval's version touches this file only.

Models:

- `hf:DIR` (a Hugging Face model directory), `hf:ADAPTER` (a LoRA adapter from
  `synthcodec train`: lm_eval's `hf` model on the adapter's base with its `peft=` option),
  `hf:FILE.gguf`;
- `local` (the embedded SmolLM2-135M-Instruct) and `gguf:PATH`: lm_eval's `hf` model with
  `gguf_file=` (transformers dequantizes the GGUF), the same loader `synthcodec train --base
  local` uses. Why not a llama.cpp server: see docs/benchmark.md ("Why the GGUF runs in
  transformers");
- `NAME@http://HOST:PORT/v1` and `openai:NAME`: lm_eval's `local-completions` model against
  the server's /v1/completions, for generation tasks only (an HTTP completion gives no
  log-likelihoods of a given continuation without the model's tokenizer).

`--data-dir DIR`: every task YAML under DIR can be named in `--tasks` (lm_eval's
`TaskManager(include_path=DIR)`); a relative `data_files` path in such a YAML is read
relative to the YAML's folder; and any task whose `dataset_path` (e.g. `cais/mmlu`) exists
under DIR as a folder (`DIR/cais/mmlu`, a copy of the Hub dataset repository) reads that copy
instead of the Hub. With `--data-dir`, the Hub is never contacted (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.errors import MissingExtraError, UserError
from synthcodec.llm.spec import HTTPEndpoint, find_kind, parse_http

log = logging.getLogger(__name__)

EXTRA = "eval"
LOGLIKELIHOOD_TYPES = ("loglikelihood", "loglikelihood_rolling", "multiple_choice")
RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"
SUMMARY_JSON = "summary.json"
TASK_NAME = re.compile(r"^[A-Za-z0-9_.\-*]+$")
CODE_TASK_HINT = ("humaneval", "mbpp", "cruxeval", "pseudo_to_code")


# --- Options ----------------------------------------------------------------------------


def parse_tasks(text: str | Sequence[str]) -> list[str]:
    """`mmlu,bbh` (or a list of such strings) -> ['mmlu', 'bbh']; UserError on a bad name."""
    parts = [text] if isinstance(text, str) else list(text)
    tasks: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise UserError(f"--tasks: expected task names, got {part!r}")
        for name in part.split(","):
            name = name.strip()
            if not name:
                continue
            if not TASK_NAME.match(name):
                raise UserError(f"--tasks: {name!r} is not a task name (letters, digits, _ . - "
                                "and * only; separate tasks with commas)")
            if name not in tasks:
                tasks.append(name)
    if not tasks:
        raise UserError("--tasks: give at least one task, e.g. --tasks mmlu,bbh")
    return tasks


@dataclass
class ModelTarget:
    """How lm_eval loads a synthcodec model spec."""

    spec: str
    lm: str  # lm_eval's model name: "hf" or "local-completions"
    args: dict[str, Any]
    loglikelihood: bool  # can it score given continuations (multiple-choice tasks)?
    description: str
    shown_base_url: str | None = None  # base_url with any secret replaced by ***

    def public_args(self) -> dict[str, Any]:
        args = {k: v for k, v in self.args.items() if k not in ("api_key", "header")}
        if self.shown_base_url:
            args["base_url"] = self.shown_base_url
        return args


def resolve_model(spec: str, *, device: str | None = None, batch_size: int = 8
                  ) -> ModelTarget:
    """Turn a model spec into lm_eval's model name and arguments (UserError when bad)."""
    spec = spec.strip()
    kind = find_kind(spec)
    target = kind.lm_eval if kind is not None else None
    if kind is not None and target == "api":
        kind.check(spec)
        return _api_target(parse_http(spec), batch_size)
    if kind is not None and target == "gguf":
        from synthcodec.llm.hfmodels import resolve_base

        path = kind.path(spec) if kind.path is not None else None  # None: the embedded one
        if path is not None and not (Path(path).is_file() and path.lower().endswith(".gguf")):
            raise UserError(f"model {spec!r}: no such .gguf file")
        base = resolve_base(spec or "local")
        return _hf_target(spec or "local", _gguf_args(base.path), device, batch_size,
                          f"GGUF {base.path} dequantized by transformers")
    if kind is not None and target == "hf" and kind.path is not None:
        return _hf_model(spec, Path(kind.path(spec)).expanduser(), device, batch_size)
    raise UserError(f"model {spec!r}: expected local, gguf:PATH, hf:PATH, "
                    "NAME@http://HOST:PORT/v1 or openai:NAME")


def _gguf_args(path: str) -> dict[str, Any]:
    p = Path(path).resolve()
    return {"pretrained": str(p.parent), "gguf_file": p.name}


def _hf_model(spec: str, path: Path, device: str | None, batch_size: int) -> ModelTarget:
    if not path.exists():
        raise UserError(f"model {spec!r}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"model {spec!r}: expected a directory or a .gguf file")
        return _hf_target(spec, _gguf_args(str(path)), device, batch_size,
                          f"GGUF {path.resolve()} dequantized by transformers")
    if (path / "adapter_config.json").exists():
        from synthcodec.llm.hfmodels import adapter_base

        base = adapter_base(path)
        args = (_gguf_args(base.path) if base.kind == "gguf"
                else {"pretrained": base.path})
        # The adapter directory holds the tokenizer (and chat template) used in training.
        args.update(peft=str(path.resolve()), tokenizer=str(path.resolve()))
        return _hf_target(spec, args, device, batch_size,
                          f"LoRA adapter {path.resolve()} on {base.spec} ({base.path})")
    if (path / "config.json").exists():
        return _hf_target(spec, {"pretrained": str(path.resolve())}, device, batch_size,
                          f"Hugging Face model {path.resolve()}")
    raise UserError(f"model {spec!r}: not a Hugging Face model directory (no config.json) nor "
                    "a LoRA adapter (no adapter_config.json)")


def _hf_target(spec: str, args: dict[str, Any], device: str | None, batch_size: int,
               description: str) -> ModelTarget:
    args = {**args, "batch_size": batch_size}
    if device:
        args["device"] = device
    return ModelTarget(spec, "hf", args, True, description)


def _api_target(endpoint: HTTPEndpoint, batch_size: int) -> ModelTarget:
    # Our own header, always: lm_eval's local-completions would otherwise send
    # $OPENAI_API_KEY to whatever server is named (the key rules are in llm/spec.py).
    key = endpoint.api_key()
    header = {"Authorization": f"Bearer {key}"} if key else {"Accept": "application/json"}
    base, _, query = endpoint.url.partition("?")
    args = {"model": endpoint.model, "base_url": f"{base}/completions" + (f"?{query}" if query else ""),
            "tokenizer_backend": None, "tokenized_requests": False, "num_concurrent": 1,
            "max_retries": 3, "header": header}
    shown_base, _, shown_query = endpoint.shown_url.partition("?")
    return ModelTarget(endpoint.identity, "local-completions", args, False,
                       f"OpenAI-compatible server {endpoint.shown_url} (/completions), "
                       f"model {endpoint.model}",
                       f"{shown_base}/completions" + (f"?{shown_query}" if shown_query else ""))


def require_extra(target: ModelTarget | None = None) -> None:
    """MissingExtraError naming the extra when lm_eval (or, for hf models, torch) is absent."""
    if importlib.util.find_spec("lm_eval") is None:
        raise MissingExtraError("lm-eval", EXTRA, "synthcodec benchmark")
    if target is not None and target.lm == "hf":
        from synthcodec.llm.hfmodels import require_train_extra

        require_train_extra(f"benchmarking {target.spec}")
        if target.args.get("gguf_file") and importlib.util.find_spec("gguf") is None:
            raise MissingExtraError("gguf", "train", f"benchmarking {target.spec}")
    if target is not None and target.lm == "local-completions":
        for package in ("tenacity", "requests", "aiohttp"):
            if importlib.util.find_spec(package) is None:
                raise MissingExtraError(package, EXTRA, f"benchmarking {target.spec}")


# --- Tasks ------------------------------------------------------------------------------


def _offline_env(data_dir: Path | None) -> None:
    if data_dir is not None:
        # Everything is local: never contact the Hub (also read when `datasets` is imported).
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def task_manager(tasks: Sequence[str], data_dir: Path | None) -> Any:
    """lm_eval's TaskManager: the data dir's YAMLs (and, when a task is not there, the
    harness's own), with dataset paths redirected to local copies under data_dir."""
    from lm_eval.tasks import TaskManager

    def build(defaults: bool) -> Any:
        tm = TaskManager(include_path=str(data_dir) if data_dir else None,
                         include_defaults=defaults)
        if data_dir is not None:
            tm._factory = _local_factory(tm._factory, data_dir)  # noqa: SLF001 - pinned lm_eval
        return tm

    if data_dir is not None:
        tm = build(defaults=False)  # the harness's ~10k YAMLs take a while to index
        if all(_known(tm, t) for t in tasks):
            return tm
    tm = build(defaults=True)
    missing = [t for t in tasks if not _known(tm, t)]
    if missing:
        where = f" (nor under {data_dir})" if data_dir else ""
        raise UserError(f"--tasks: unknown task {', '.join(map(repr, missing))}: not one of "
                        f"lm-eval's tasks{where}; list them with `lm_eval ls tasks`")
    return tm


def _known(tm: Any, name: str) -> bool:
    if any(c in name for c in "*?["):
        return bool(tm.match_tasks([name]))
    return name in tm.all_tasks


def _local_factory(factory: Any, data_dir: Path) -> Any:
    """Wrap the factory so every task config it builds reads local copies of its data."""
    original = factory._load_full_config  # noqa: SLF001

    def load(entry: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = original(entry, overrides)
        return localize_config(cfg, data_dir, entry.yaml_path)

    factory._load_full_config = load  # noqa: SLF001
    return factory


def localize_config(cfg: dict[str, Any], data_dir: Path, yaml_path: Path | None
                    ) -> dict[str, Any]:
    """Point `dataset_path` at DIR/<dataset_path> when that copy exists, and resolve
    relative `data_files` against the task YAML's folder."""
    path = cfg.get("dataset_path")
    if isinstance(path, str) and path not in ("json", "csv", "parquet", "text"):
        local = data_dir / path
        if local.is_dir():
            cfg["dataset_path"] = str(local.resolve())
    kwargs = cfg.get("dataset_kwargs")
    if isinstance(kwargs, dict) and "data_files" in kwargs and yaml_path is not None:
        kwargs = dict(kwargs)
        kwargs["data_files"] = _resolve_files(kwargs["data_files"], Path(yaml_path).parent)
        cfg["dataset_kwargs"] = kwargs
    return cfg


def _resolve_files(files: Any, base: Path) -> Any:
    if isinstance(files, str):
        if "://" in files or Path(files).is_absolute():
            return files
        return str((base / files).resolve())
    if isinstance(files, list):
        return [_resolve_files(f, base) for f in files]
    if isinstance(files, dict):
        return {k: _resolve_files(v, base) for k, v in files.items()}
    return files


def leaf_configs(tm: Any, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The raw YAML config (functions unresolved, nothing loaded) of every task that
    `tasks` names, groups and tags expanded: to check them before any model loads."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    out: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()

    def visit(item: Any, inherited: dict[str, Any]) -> None:
        if isinstance(item, dict):  # an inline task or group inside a group's task list
            name = item.get("task") or item.get("group")
            if isinstance(name, list) or item.get("group"):
                members = item.get("task") if isinstance(item.get("task"), list) else []
                for m in members:
                    visit(m, {**inherited, **{k: v for k, v in item.items()
                                              if k not in ("task", "group")}})
                return
            if isinstance(name, str) and name in tm.all_tasks and len(item) == 1:
                visit(name, inherited)
                return
            out[str(name)] = {**inherited, **item}
            return
        if not isinstance(item, str) or item in seen:
            return
        seen.add(item)
        names = tm.match_tasks([item]) if any(c in item for c in "*?[") else [item]
        for name in names:
            entry = tm._entry(name)  # noqa: SLF001
            if entry is None:
                continue
            if entry.kind == Kind.TAG:
                for other, e in tm.task_index.items():
                    if name in (e.tags or set()):
                        visit(other, inherited)
                continue
            cfg = (load_yaml(entry.yaml_path, resolve_func=False, recursive=True)
                   if entry.yaml_path else dict(entry.cfg or {}))
            if entry.kind == Kind.GROUP:
                members = cfg.get("task") if isinstance(cfg.get("task"), list) else []
                for m in members:
                    visit(m, inherited)
                continue
            out[name] = {**inherited, **cfg}

    for t in tasks:
        visit(t, {})
    return out


def check_tasks(configs: Mapping[str, Mapping[str, Any]], target: ModelTarget,
                allow_code_execution: bool) -> None:
    """Refuse, before anything loads, what cannot or may not run."""
    unsafe = sorted(n for n, c in configs.items() if c.get("unsafe_code"))
    if unsafe and not allow_code_execution:
        raise UserError(f"{', '.join(unsafe)} execute{'s' if len(unsafe) == 1 else ''} code "
                        "written by the model; add --allow-code-execution to allow it (each "
                        "program runs in a subprocess with a time limit, no network, in a "
                        "temporary directory)")
    if not target.loglikelihood:
        scored = sorted(n for n, c in configs.items()
                        if c.get("output_type") in LOGLIKELIHOOD_TYPES)
        if scored:
            raise UserError(f"{target.spec}: {', '.join(scored[:5])}"
                            f"{' ...' if len(scored) > 5 else ''} score answer choices by "
                            "log-likelihood, which an OpenAI-compatible server does not give "
                            "here; use it for generation tasks (e.g. bbh_zeroshot, drop, "
                            "humaneval) or benchmark a local model (local, gguf:, hf:)")


# --- Code execution guard ---------------------------------------------------------------

_guard_installed = False


def install_network_guard() -> None:
    """Child processes forked by this one (lm_eval's code_eval runs each program in one)
    may not open network connections: an audit hook refuses socket connects, DNS lookups
    and bind in any process that is not the main one."""
    global _guard_installed
    if _guard_installed:
        return
    import multiprocessing

    blocked = {"socket.connect", "socket.getaddrinfo", "socket.bind", "socket.sendto",
               "socket.gethostbyname", "socket.__new__"}

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in blocked and multiprocessing.parent_process() is not None:
            raise PermissionError("network access is disabled while running model-written "
                                  "code (synthcodec benchmark)")

    sys.addaudithook(hook)
    _guard_installed = True


@contextlib.contextmanager
def _in_temp_dir() -> Iterator[Path]:
    old = Path.cwd()
    tmp = Path(tempfile.mkdtemp(prefix="synthcodec-bench-"))
    os.chdir(tmp)
    try:
        yield tmp
    finally:
        os.chdir(old)
        shutil.rmtree(tmp, ignore_errors=True)


# --- Running ----------------------------------------------------------------------------


@dataclass
class BenchmarkSettings:
    tasks: list[str]
    limit: int | None = None
    shots: int | None = None
    data_dir: str | None = None
    batch_size: int = 8
    device: str | None = None
    chat_template: bool = False
    allow_code_execution: bool = False
    seed: int = 0

    def config(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchmarkResult:
    run_dir: Path
    results: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def harness_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def run_benchmark(model: str, settings: BenchmarkSettings, run_dir: str | os.PathLike[str], *,
                  say: Callable[[str], None] | None = None, verbose: bool = False
                  ) -> BenchmarkResult:
    """Run `settings.tasks` on `model` with lm_eval; write results.json, summary.md and
    summary.json (+ samples_TASK.jsonl) into run_dir."""
    say = say or log.info
    target = resolve_model(model, device=settings.device, batch_size=settings.batch_size)
    data_dir = Path(settings.data_dir).expanduser().resolve() if settings.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {settings.data_dir}: no such directory")
    require_extra(target)
    _offline_env(data_dir)
    if target.lm == "hf":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch's first import
        from synthcodec.llm.hfmodels import pick_device

        device, dtype = pick_device(settings.device)  # as `synthcodec train` and hf: pick
        target.args.update(device=device, dtype=str(dtype).removeprefix("torch."))
    _quiet_logs(verbose)
    out = Path(run_dir)

    tm = task_manager(settings.tasks, data_dir)
    configs = leaf_configs(tm, settings.tasks)
    check_tasks(configs, target, settings.allow_code_execution)
    unsafe = any(c.get("unsafe_code") for c in configs.values())
    if unsafe:
        os.environ["HF_ALLOW_CODE_EVAL"] = "1"
        install_network_guard()
    if target.lm == "local-completions":
        key = os.environ.get("SYNTHCODEC_API_KEY")
        if key and not os.environ.get("OPENAI_API_KEY"):
            os.environ["OPENAI_API_KEY"] = key  # lm_eval reads this one
    say(f"benchmark {target.spec}: {target.description}; tasks {', '.join(settings.tasks)}"
        + (f"; limit {settings.limit}" if settings.limit else "")
        + (f"; {settings.shots} shots" if settings.shots is not None else ""))

    import lm_eval

    started = time.monotonic()
    cwd = _in_temp_dir() if unsafe else contextlib.nullcontext()
    try:
        with cwd:
            results = lm_eval.simple_evaluate(
                model=target.lm, model_args=dict(target.args), tasks=list(settings.tasks),
                num_fewshot=settings.shots, limit=settings.limit, task_manager=tm,
                apply_chat_template=settings.chat_template, log_samples=True,
                confirm_run_unsafe_code=settings.allow_code_execution,
                random_seed=settings.seed, numpy_random_seed=settings.seed,
                torch_random_seed=settings.seed, fewshot_random_seed=settings.seed,
                bootstrap_iters=1000)
    except UserError:
        raise
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as exc:
        raise UserError(f"lm_eval failed: {_one_line(exc)}") from exc
    except Exception as exc:  # noqa: BLE001 - datasets' offline errors have many types
        if type(exc).__module__.split(".")[0] in ("datasets", "huggingface_hub", "requests"):
            raise UserError(f"lm_eval could not load a dataset: {_one_line(exc)}"
                            + (" (with --data-dir nothing is downloaded)" if data_dir else ""))
        raise
    seconds = time.monotonic() - started
    if results is None:
        raise UserError("lm_eval returned no results")
    return write_outputs(out, results, target=target, settings=settings, seconds=seconds,
                         say=say)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:400] + "…") if len(text) > 400 else text or type(exc).__name__


def _quiet_logs(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    for name in ("lm_eval", "lm-eval", "datasets", "transformers", "accelerate", "peft",
                 "httpx", "urllib3"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        with contextlib.suppress(Exception):
            import datasets

            datasets.disable_progress_bars()
            datasets.logging.set_verbosity_error()
        with contextlib.suppress(Exception):
            from synthcodec.llm.hfmodels import quiet_transformers

            quiet_transformers()


# --- Outputs ----------------------------------------------------------------------------


def summary_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (task or group, metric, filter): the numbers the summary table shows."""
    rows = []
    versions = results.get("versions") or {}
    shots = results.get("n-shot") or {}
    samples = results.get("n-samples") or {}
    groups = set((results.get("groups") or {}).keys())
    for section in ("results", "groups"):
        for task, metrics in (results.get(section) or {}).items():
            if section == "results" and task in groups:
                continue
            for key, value in metrics.items():
                if key == "alias" or "_stderr," in key or "," not in key:
                    continue
                metric, filt = key.split(",", 1)
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                stderr = metrics.get(f"{metric}_stderr,{filt}")
                n = samples.get(task) or {}
                rows.append({
                    "task": task, "group": section == "groups",
                    "alias": str(metrics.get("alias", task)).strip(" -"),
                    "version": versions.get(task), "shots": shots.get(task),
                    "n": n.get("effective"), "of": n.get("original"),
                    "metric": metric, "filter": filt, "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                })
    return rows


def _num(value: float | None, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)


def render_summary(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """The markdown summary: what ran, then one table row per task and metric."""
    limit = meta.get("limit")
    shots = meta.get("shots")
    lines = [f"# Benchmark `{meta.get('model')}`", "",
             f"- model: {meta.get('description')}",
             f"- harness: lm-evaluation-harness (lm-eval) {meta.get('harness_version')}",
             f"- tasks: {', '.join(meta.get('tasks') or [])}",
             f"- shots: {shots if shots is not None else 'each task default'}",
             f"- limit: {f'first {limit} documents per task' if limit else 'none (all documents)'}",
             f"- data: {meta.get('data_dir') or 'the Hugging Face Hub (as lm_eval loads it)'}",
             f"- seconds: {meta.get('seconds', 0):.1f}", ""]
    if limit:
        lines += ["> With a limit the numbers are a smoke test, not comparable to published "
                  "scores.", ""]
    lines += ["| task | version | shots | docs | metric | filter | value | ± stderr |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        docs = "–" if r.get("n") is None else (
            f"{r['n']}" if r.get("of") in (None, r["n"]) else f"{r['n']} of {r['of']}")
        name = r["task"] + (" (group)" if r.get("group") else "")
        lines.append(f"| {name} | {r.get('version') if r.get('version') is not None else '–'} "
                     f"| {r.get('shots') if r.get('shots') is not None else '–'} | {docs} "
                     f"| {r['metric']} | {r['filter']} | {_num(r['value'])} "
                     f"| {_num(r.get('stderr'))} |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, results: dict[str, Any], *, target: ModelTarget,
                  settings: BenchmarkSettings, seconds: float,
                  say: Callable[[str], None]) -> BenchmarkResult:
    from synthcodec.store import atomic_writer, write_json

    try:
        from lm_eval.utils import handle_non_serializable
    except ImportError:  # pragma: no cover
        handle_non_serializable = str  # type: ignore[assignment]

    out.mkdir(parents=True, exist_ok=True)
    samples = results.pop("samples", None) or {}
    meta = {"model": target.spec, "description": target.description, "lm_eval_model": target.lm,
            "model_args": target.public_args(), "harness_version": harness_version(),
            "tasks": list(settings.tasks), "shots": settings.shots, "limit": settings.limit,
            "data_dir": settings.data_dir, "settings": settings.config(),
            "seconds": round(seconds, 3)}
    from synthcodec import __version__

    results["synthcodec"] = {**meta, "version": __version__}
    with atomic_writer(out / RESULTS_FILE) as fh:
        fh.write(json.dumps(results, indent=2, default=handle_non_serializable,
                            ensure_ascii=False) + "\n")
    for task, rows in samples.items():
        with atomic_writer(out / f"samples_{_safe(task)}.jsonl") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=handle_non_serializable,
                                    ensure_ascii=False) + "\n")
    rows = summary_rows(results)
    text = render_summary(rows, meta)
    with atomic_writer(out / SUMMARY_FILE) as fh:
        fh.write(text)
    write_json(out / SUMMARY_JSON, {**meta, "rows": rows,
                                    "versions": results.get("versions") or {},
                                    "n-shot": results.get("n-shot") or {},
                                    "n-samples": results.get("n-samples") or {}})
    say(f"wrote {out / RESULTS_FILE} and {out / SUMMARY_FILE}")
    return BenchmarkResult(out, results, rows, seconds)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
