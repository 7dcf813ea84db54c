"""`synthcodec compare`: judge two models' answers pairwise in both orders and report.

Pairing happens entirely before any judge call: a question missing on one side or present
twice stops the command (exit 2) with the list. Judging runs through the shared engine
(journal per pair, resume, request cache); the report is rebuilt from the journal each run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthcodec.driver import Plan, Summary, run_plans
from synthcodec.errors import InputError, UserError
from synthcodec.executors import Item
from synthcodec.formats import join_instruction
from synthcodec.io import iter_rows
from synthcodec.judging.check import PRE_CHECK_PROBES, Say, manifest_entry, pre_check, silent
from synthcodec.judging.check.probes import Sample
from synthcodec.judging.pairwise import JudgeSettings, judge_both_orders, load_judge_template
from synthcodec.llm import redact_spec
from synthcodec.records import META, Record, record_id
from synthcodec.report.compare import Report, render_table, write_report
from synthcodec.session import Models, RunOptions, shown_models
from synthcodec.stages.base import ModelStage
from synthcodec.store import FAILED, OK, Journal, RunDir, hash_file, hash_value

ID_FIELDS = ("question_id", "id", "idx")
ANSWER_FIELDS = ("answer", "response", "output", "text")
QUESTION_FIELDS = ("question", "prompt", "text")
STAGE = "judge"
Located = tuple[int, dict[str, Any]]  # (line, row)


@dataclass(frozen=True)
class Pair:
    """One question with both answers; `key` is how it was matched (for messages)."""

    bench: str
    key: str
    question_id: Any
    question: str
    category: str | None
    answer_a: str
    answer_b: str


@dataclass(frozen=True)
class PairSpec:
    """How to read and match two answer files."""

    key: tuple[str, ...] | None = None  # None: the first of ID_FIELDS both files have
    answer_field: str | None = None  # None: the first of ANSWER_FIELDS each file has
    question_field: str | None = None
    category_field: str = "category"


def _load(path: str) -> list[tuple[int, dict[str, Any]]]:
    rows = list(iter_rows(path))
    if not rows:
        raise InputError(path, "the answers file has no rows")
    return rows


def _pick(path: str, row: Mapping[str, Any], line: int, candidates: Sequence[str],
          what: str, option: str, exclude: Sequence[str] = ()) -> str:
    for name in candidates:
        if name in row and name not in exclude:
            return name
    raise InputError(path, f"no {what} field (looked for {', '.join(candidates)}); name it "
                     f"with {option}", line=line)


def _key_value(path: str, line: int, row: Mapping[str, Any], key: tuple[str, ...]) -> str:
    parts = []
    for name in key:
        if name not in row or row[name] is None:
            raise InputError(path, "missing (the --key field that pairs the answers)",
                             line=line, field=name)
        value = row[name]
        # Ids may be 1 in one file and "1" in another; text keys ignore edge whitespace.
        parts.append(value.strip() if isinstance(value, str) else str(value))
    return json.dumps(parts, ensure_ascii=False)


def _show(key: str) -> str:
    parts = [p if len(p) <= 50 else p[:47] + "..." for p in json.loads(key)]
    return " | ".join(repr(p) if len(parts) > 1 else p for p in parts)


def _listing(keys: list[str], limit: int = 10) -> str:
    shown = "; ".join(_show(k) for k in keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def pair_answers(bench: str, path_a: str, path_b: str, spec: PairSpec) -> list[Pair]:
    """Match the rows of two answer files; UserError listing every unmatched or repeated key."""
    rows_a, rows_b = _load(path_a), _load(path_b)
    if spec.key is not None:
        key = spec.key
    else:
        first_a, first_b = rows_a[0][1], rows_b[0][1]
        shared = [f for f in ID_FIELDS if f in first_a and f in first_b]
        if not shared:
            raise UserError(
                f"{path_a} and {path_b} share no id field ({', '.join(ID_FIELDS)}); name the "
                "fields that identify a question with --key, e.g. --key instruction,input")
        key = (shared[0],)

    def index(path: str, rows: list[Located]) -> tuple[dict[str, Located], list[str]]:
        seen: dict[str, Located] = {}
        counts: Counter[str] = Counter()
        for line, row in rows:
            k = _key_value(path, line, row, key)
            counts[k] += 1
            seen.setdefault(k, (line, row))
        return seen, [k for k, n in counts.items() if n > 1]

    by_a, dup_a = index(path_a, rows_a)
    by_b, dup_b = index(path_b, rows_b)
    only_a = [k for k in by_a if k not in by_b]
    only_b = [k for k in by_b if k not in by_a]
    problems = []
    if dup_a:
        problems.append(f"  present more than once in {path_a}: {_listing(dup_a)}")
    if dup_b:
        problems.append(f"  present more than once in {path_b}: {_listing(dup_b)}")
    if only_a:
        problems.append(f"  missing from {path_b} ({len(only_a)}): {_listing(only_a)}")
    if only_b:
        problems.append(f"  missing from {path_a} ({len(only_b)}): {_listing(only_b)}")
    if problems:
        raise UserError(f"cannot pair the answers of benchmark '{bench}' by "
                        f"{','.join(key)}:\n" + "\n".join(problems))

    line_a, row_a0 = rows_a[0]
    line_b, row_b0 = rows_b[0]
    field_a = spec.answer_field or _pick(path_a, row_a0, line_a, ANSWER_FIELDS, "answer",
                                         "--answer-field", exclude=key)
    field_b = spec.answer_field or _pick(path_b, row_b0, line_b, ANSWER_FIELDS, "answer",
                                         "--answer-field", exclude=key)
    pairs = []
    for k, (line, row) in by_a.items():
        line_b, row_b = by_b[k]
        answer_a = _text(path_a, line, row, field_a)
        answer_b = _text(path_b, line_b, row_b, field_b)
        question = _question(path_a, line, row, spec, key, field_a)
        category = row.get(spec.category_field, row_b.get(spec.category_field))
        qid = row[key[0]] if len(key) == 1 else None
        pairs.append(Pair(bench=bench, key=_show(k), question_id=qid, question=question,
                          category=None if category is None else str(category),
                          answer_a=answer_a.strip(), answer_b=answer_b.strip()))
    return pairs


def _text(path: str, line: int, row: Mapping[str, Any], name: str) -> str:
    if name not in row or row[name] is None:
        raise InputError(path, "missing", line=line, field=name)
    value = row[name]
    if not isinstance(value, str):
        raise InputError(path, f"expected str, got {type(value).__name__}", line=line, field=name)
    return value


def _question(path: str, line: int, row: Mapping[str, Any], spec: PairSpec,
              key: tuple[str, ...], answer_field: str) -> str:
    """The question the judge sees: named, or our answers' `question`, or the text key."""
    if spec.question_field:
        return _text(path, line, row, spec.question_field).strip()
    if "question" in row:
        return _text(path, line, row, "question").strip()
    if "instruction" in row:  # Alpaca / Self-Instruct predictions: instruction + input
        inp = row.get("input")
        return join_instruction(_text(path, line, row, "instruction"),
                                inp if isinstance(inp, str) else "")
    if all(isinstance(row.get(k), str) for k in key):
        return "\n\n".join(row[k].strip() for k in key if row[k].strip())
    name = _pick(path, row, line, QUESTION_FIELDS, "question", "--question-field",
                 exclude=(answer_field,))
    return _text(path, line, row, name).strip()


def _label(path: str, given: str | None) -> str:
    """The model's name for the report: given, else the answers' `model`, else the file stem."""
    if given:
        return given
    first = next(iter_rows(path), None)
    model = first[1].get("model") if first else None
    return str(model) if isinstance(model, str) and model else Path(path).stem


def _benchmarks(files: tuple[str, ...], pairs: tuple[tuple[str, str, str], ...],
                name: str | None) -> list[tuple[str, str, str]]:
    benches = list(pairs)
    if files:
        if len(files) != 2:
            raise UserError(f"give exactly two answer files A B (got {len(files)}), or use "
                            "--pair NAME A B")
        benches.insert(0, (name or _bench_name(files[0]), files[0], files[1]))
    if not benches:
        raise UserError("nothing to compare: give two answer files A B, or --pair NAME A B")
    names = [b for b, _, _ in benches]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"benchmark name(s) used twice: {', '.join(repeated)}; name each "
                        "--pair differently")
    return benches


def _bench_name(path: str) -> str:
    first = next(iter_rows(path), None)
    bench = first[1].get("bench") if first else None
    return str(bench) if isinstance(bench, str) and bench else Path(path).stem


@dataclass
class JudgeStage(ModelStage):
    """Judge one pair of answers in both orders (the pairwise judge of both papers)."""

    judge: str = "local"
    settings: JudgeSettings | None = None
    name: str = STAGE

    def __post_init__(self) -> None:
        self.roles = {"judge": self.judge}
        self.settings = self.settings or JudgeSettings()

    def config(self) -> dict[str, Any]:
        assert self.settings is not None
        return self.settings.config()

    async def setup(self, models: Models) -> None:
        # JSON or text answers: decided (and checked) before any work starts.
        assert self.settings is not None
        self._client = models["judge"]
        self.settings = self.settings.for_backend(self._client.backend)

    async def run(self, record: Record) -> Record:
        assert self.settings is not None
        both = await judge_both_orders(self._client, record["question"], record["answer_a"],
                                       record["answer_b"], self.settings)
        return {**record, **both.as_dict()}


@dataclass
class CompareResult:
    """A finished (or stopped) compare run: its summary and its report, with what the
    command prints of them."""

    summary: Summary
    report: Report | None  # None when the run stopped early (no report on part of the pairs)
    labels: tuple[str, str]
    judge: str  # as reports show it (credentials redacted)
    json_mode: bool  # the judge answered in JSON (else the papers' score line)

    @property
    def run_dir(self) -> Path:
        return self.summary.run_dir

    @property
    def exit_code(self) -> int:
        return self.summary.exit_code

    def report_lines(self) -> list[str]:
        """What goes to stdout: the judge check's verdict, the result table(s)."""
        lines = [self.summary.judge_line] if self.summary.judge_line else []
        if self.report is not None:
            label_a, label_b = self.labels
            lines += [f"A = {label_a}   B = {label_b}   judge = {self.judge}   (wins are A's)",
                      render_table(self.report.table_rows)]
            if self.report.categories:
                lines += ["", render_table(self.report.categories, "category")]
        return lines

    def summary_lines(self) -> list[str]:
        """What goes to stderr: the run's summary (less the verdict), the files written."""
        lines = self.summary.lines()[1 if self.summary.judge_line else 0:]
        lines.append(f"judge answers in {'JSON' if self.json_mode else 'text'}")
        if self.report is not None:
            lines += [f"wrote {self.run_dir / name}"
                      for name in ("report.md", "report.json", "chart.png")]
        return lines


def compare_plan(pairs: list[Pair], bench_order: list[str], *, judge: str,
                 settings: JudgeSettings, labels: tuple[str, str],
                 judge_check: int = PRE_CHECK_PROBES, say: Say | None = None) -> Plan:
    """Judging every pair as a plan for the driver: first a judge check with `judge_check`
    probes per kind (0: none) made from the pairs (RUN/judge_card.{json,md}; `say` hears its
    cost and verdict), then the pairs, then the report (once every pair is done: a run
    stopped early publishes the verdicts so far, and no report on them)."""
    shown_judge = redact_spec(judge)
    records = [asdict(p) for p in pairs]
    # Each verdict carries its id (joins it to its failed row, or to a re-run's verdict).
    items = [Item(id=rid, idx=i, record={**r, META: {"id": rid, "index": i}})
             for i, r in enumerate(records) for rid in [record_id(i, r)]]
    stage = JudgeStage(judge=judge, settings=settings)

    async def check_judge(models: Models, run_path: Path) -> dict[str, Any] | None:
        if judge_check <= 0:
            return None
        samples = [Sample(p.key, p.question, "", p.answer_a, other=p.answer_b) for p in pairs]
        return manifest_entry(await pre_check(
            samples, judge_check, run_path, judge=shown_judge,
            data=f"the {len(pairs)} pairs compared", client=models["judge"],
            settings=settings, say=say or silent))

    def report(run: RunDir, journal: Journal, summary: Summary) -> Report | None:
        if summary.interrupted:
            return None
        verdicts = [row for rows in journal.rows(OK) for row in rows]
        return write_report(run.path, verdicts, bench_order, list(journal.rows(FAILED)),
                            labels=labels, judge=shown_judge, pairs=len(items))

    # The run layout of every command: kept (the verdicts), rejected (none: every judged
    # pair is kept), failed; then the report. Each pair sends two requests at once: half as
    # many pairs in flight as requests.
    plan = Plan(stage, lambda: items, len(items), label="judge",
                concurrency=lambda models: max(1, models.concurrency() // 2),
                before=check_judge, after=report, failed_text="pairs could not be judged")
    return plan


def compare_files(files: tuple[str, ...] | list[str] = (),
                  pairs: tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]] = (), *,
                  run_dir: str | Path, options: RunOptions, name: str | None = None,
                  judge: str = "local", key: str | None = None, answer_field: str | None = None,
                  question_field: str | None = None, category_field: str = "category",
                  label_a: str | None = None, label_b: str | None = None,
                  judge_prompt: str | None = None, json: bool | None = None,
                  judge_max_tokens: int = 512, reasks: int = 2, scores: str = "text",
                  evidence_first: bool = False, judge_check: int = PRE_CHECK_PROBES,
                  say: Say | None = None,
                  backends: Mapping[str, Any] | None = None) -> CompareResult:
    """Pair the answer files (A B, or NAME A B per benchmark), judge them into `run_dir`
    (resuming it) and write the report; nothing is printed (`say` hears the judge check's
    lines as they happen). `backends={"judge": backend}` replaces the judge model."""
    benches = _benchmarks(tuple(files), tuple(pairs), name)
    spec = PairSpec(
        key=tuple(k.strip() for k in key.split(",") if k.strip()) if key else None,
        answer_field=answer_field, question_field=question_field, category_field=category_field,
    )
    if spec.key is not None and not spec.key:
        raise UserError("--key needs at least one field name")
    all_pairs: list[Pair] = []
    for bench, path_a, path_b in benches:
        bench_pairs = pair_answers(bench, path_a, path_b, spec)
        all_pairs.extend(bench_pairs[: options.limit] if options.limit else bench_pairs)
    settings = JudgeSettings(template=load_judge_template(judge_prompt,
                                                          evidence_first=evidence_first),
                             max_tokens=judge_max_tokens, reasks=reasks, json=json,
                             scores=scores, evidence_first=evidence_first)
    first_a, first_b = benches[0][1], benches[0][2]
    labels = (_label(first_a, label_a), _label(first_b, label_b))
    config = {
        "stage": STAGE,
        "benchmarks": [{"name": b, "a": str(Path(a).resolve()), "a_sha256": hash_file(a),
                        "b": str(Path(bb).resolve()), "b_sha256": hash_file(bb)}
                       for b, a, bb in benches],
        "pairs_sha256": hash_value([asdict(p) for p in all_pairs]),
        "limit": options.limit,
        "models": shown_models({"judge": judge}),
        **settings.config(),
    }
    plan = compare_plan(all_pairs, [b for b, _, _ in benches], judge=judge, settings=settings,
                        labels=labels, judge_check=judge_check, say=say)
    run = run_plans([plan], run_dir, config, options, backends=backends)
    judged = plan.stage.settings  # as the stage set it up for its backend (JSON or text)
    return CompareResult(run.stages[0], run.passes.get(STAGE), labels, redact_spec(judge),
                         json_mode=bool(judged and judged.json))
