"""The experiment's datasets: the rows each is chosen by, the selection bake-off, building
them, and the bake-off's report table.

A dataset takes any selector of `synthcodec select` (stages/select.Rule)::

    [experiment.datasets.ifd]
    select = "ifd"          # score (default), ifd, target_ifd, length, random, or a column
    top = 50                # or frac, min, max; lowest = true; diverse = "minhash"

`top = N` / `min_score = T` alone keep their AlpaGasus meaning (by score), `random = N` or
`random = "other"` (as many rows as dataset `other`) the paper's baseline, `path = FILE` a
ready-made training file. Selecting by score needs [experiment.rate]; any other signal is
read from the experiment's score step (stages/score.py over the same pool), which runs
when a dataset needs it; target_ifd is computed by the experiment's `base`, the model
being tuned.

A bake-off compares selectors on one budget, with the honest baselines beside them::

    [experiment.bakeoff]
    size = 50                           # every dataset gets this many rows of the pool
    selectors = ["ifd", "target_ifd", "score", "ifd+minhash"]
    baselines = true                    # random-50 and longest-50 (default)

Each selector becomes a dataset named after it; each is judged against `random`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.io import iter_rows
from synthcodec.stages.select_rules import DIVERSE, IFD_SIGNALS, SCORE, Rule
from synthcodec.store import atomic_writer, dumps, read_json

BASELINES = {"random": "random", "longest": "length"}  # dataset name -> signal
DATASET_KEYS: dict[str, Any] = {
    "select": str, "top": int, "frac": float, "min": float, "max": float, "lowest": bool,
    "diverse": str, "min_score": float, "random": (int, str), "path": str, "seed": int}


@dataclass
class ScoreSpec:
    """[experiment.score]: the score step's settings (the pool is [experiment.rate]'s)."""

    data: str | None = None
    limit: int | None = None
    model: str = "local"  # computes ifd (Superfiltering: a small model is enough)
    seed: int = 0


@dataclass
class DatasetSpec:
    name: str
    select: str | None = None  # the signal; None: by score (top/min_score) or random
    top: int | None = None
    frac: float | None = None
    min: float | None = None
    max: float | None = None
    lowest: bool = False
    diverse: str | None = None
    min_score: float | None = None
    random: int | str | None = None  # N rows, or the name of a dataset whose size to match
    path: str | None = None  # a ready-made training file instead of the pool
    seed: int = 0
    bakeoff: bool = False  # made by [experiment.bakeoff]

    @property
    def signal(self) -> str:
        return "random" if self.random is not None else self.select or SCORE

    def selection(self, size: int | None = None) -> Rule:
        """The select rule; `size`: the row count of the dataset `random` names."""
        if self.random is not None:
            return Rule(by="random", top=size if size is not None else int(self.random),
                        seed=self.seed)
        low = self.min_score if self.min_score is not None else self.min
        return Rule(by=self.signal, top=self.top, frac=self.frac, min=low, max=self.max,
                    lowest=self.lowest, diverse=self.diverse,
                    seed=self.seed if self.signal == "random" else None)

    @property
    def rule(self) -> str:
        src = f"{self.path}: " if self.path else ""
        if self.random is not None:
            size = (f"as many as '{self.random}'" if isinstance(self.random, str)
                    else str(self.random))
            return f"{src}random {size} (seed {self.seed})"
        if self.path is not None:
            return f"{src}all rows"
        return src + self.selection().checked().describe()


def parse_dataset(name: str, table: Mapping[str, Any], where: str, seed: int,
                  take: Callable[..., dict[str, Any]]) -> DatasetSpec:
    """One [experiment.datasets.NAME] table, checked."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"{where}: dataset names may hold letters, digits, - and _ only")
    spec = DatasetSpec(name=name, **{"seed": seed, **take(dict(table), where, DATASET_KEYS)})
    if spec.random is not None and any(x is not None for x in (
            spec.select, spec.top, spec.frac, spec.min, spec.max, spec.min_score)):
        raise UserError(f"{where}: give only one of random and a selection (select, top, "
                        "frac, min, max, min_score)")
    if spec.min_score is not None and (spec.min is not None or spec.signal != SCORE):
        raise UserError(f"{where}: min_score is the score's min; use min with select")
    if spec.path is not None:
        if spec.random is None and any(x is not None for x in (
                spec.select, spec.top, spec.frac, spec.min, spec.max, spec.min_score)):
            raise UserError(f"{where}: top/min_score select rows of the pool; with path only "
                            "random applies")
        return spec
    if spec.diverse is not None and spec.diverse not in DIVERSE:
        raise UserError(f"{where}: diverse must be {' or '.join(DIVERSE)}")
    if spec.random is None and spec.select is None and spec.top is None and \
            spec.min_score is None and spec.frac is None and spec.min is None and \
            spec.max is None:
        raise UserError(f"{where}: give top, min_score or random (rows of the rated pool), "
                        "select (any signal), or path (a ready-made training file)")
    if spec.random is None:
        try:
            spec.selection().checked()
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
    return spec


def parse_bakeoff(table: Mapping[str, Any], where: str, seed: int,
                  take: Callable[..., dict[str, Any]]) -> list[DatasetSpec]:
    """[experiment.bakeoff] -> one dataset per selector, plus random-k and longest-k."""
    b = take(dict(table), where, {"size": int, "selectors": list, "baselines": bool,
                                  "seed": int})
    if "size" not in b or b["size"] < 1:
        raise UserError(f"{where}: 'size' (rows per dataset, at least 1) is required")
    size, seed = b["size"], b.get("seed", seed)
    specs: list[DatasetSpec] = []
    for item in b.get("selectors") or []:
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"{where}: selectors are signal names such as \"ifd\" or "
                            f"\"ifd+minhash\", not {item!r}")
        signal, _, diverse = item.strip().partition("+")
        name = item.strip().replace("+", "-")
        if name in BASELINES:
            raise UserError(f"{where}: '{name}' is a baseline (baselines = true adds it)")
        specs.append(parse_dataset(name, {"select": signal, "top": size,
                                          **({"diverse": diverse} if diverse else {})},
                                   where, seed, take))
    if b.get("baselines", True):
        specs += [DatasetSpec(name=name, select=signal, top=size, seed=seed)
                  for name, signal in BASELINES.items()]
    if len(specs) < 2:
        raise UserError(f"{where}: give selectors (and keep baselines = true) to compare")
    for spec in specs:
        spec.bakeoff = True
    return specs


def needs_score_step(datasets: list[DatasetSpec]) -> list[str]:
    """The IFD signals the score step must compute ([] when no dataset needs that step:
    every pool dataset selects by score or is random on a rated pool)."""
    return [s for s in IFD_SIGNALS if any(d.path is None and d.signal == s for d in datasets)]


def source_of(d: DatasetSpec, *, rate_run: Path | None, score_run: Path | None) -> Path:
    """The run a dataset's rows are selected from: the rating for score, else the scoring
    (length and random work on either)."""
    if d.signal == SCORE or score_run is None:
        assert rate_run is not None
        return rate_run
    return score_run


def build_dataset(d: DatasetSpec, out: Path, *, source: Path | None,
                  size: int | None = None) -> dict[str, Any]:
    """Select rows of the pool's run `source` (or take `d.path`) and write them as Alpaca JSON."""
    from synthcodec.stages.select import select_rows
    from synthcodec.stages.select_rules import read_scores

    if d.path is not None:
        rows = list(iter_rows(d.path))
        n = size if size is not None else d.random if isinstance(d.random, int) else None
        keep = (set(random.Random(d.seed).sample(range(len(rows)), min(n, len(rows))))
                if n is not None else set(range(len(rows))))
        picked = [rows[i] for i in sorted(keep)]
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(out) as fh:  # as given: any format `train` reads
            fh.write(dumps([row for _, row in picked], indent=1))
        return {"rows": len(picked), "pool": len(rows), "rule": d.rule}
    assert source is not None
    sel = select_rows(source, out, d.selection(size), fmt="alpaca")
    if not sel.kept:
        raise UserError(f"dataset {d.name}: the rule '{d.rule}' keeps no rows of "
                        f"{sel.summary['rated']}")
    info: dict[str, Any] = {"rows": sel.kept, "pool": sel.summary["rated"], "rule": d.rule,
                            "signal": d.signal, "signal_mean": sel.summary["signal"]["kept_mean"]}
    if d.signal in (SCORE, "random") and sel.source.stage == "rate":  # the ratings to show
        scores = sel.values if d.signal == SCORE else read_scores(source / "output.jsonl")
        kept = [scores[i] for i in sel.order]
        info.update(score_mean=sum(kept) / len(kept), score_min=min(kept), score_max=max(kept),
                    pool_score_mean=sum(scores) / len(scores))
    return info


# --- the bake-off's table ----------------------------------------------------------------


@dataclass
class DatasetFacts:
    """What the bake-off table shows of one dataset, read from its file."""

    name: str
    rows: set[tuple[str, str, str]] = field(default_factory=set)
    mean_length: float | None = None


def dataset_facts(name: str, path: Path) -> DatasetFacts:
    from synthcodec.stages.score import response_length

    data = read_json(path, [])
    rows = {(r.get("instruction", ""), r.get("input", ""), r.get("output", "")) for r in data}
    lengths = [response_length(r.get("output", "")) for r in data]
    return DatasetFacts(name, rows, sum(lengths) / len(lengths) if lengths else None)


def bakeoff_section(datasets: list[DatasetSpec], data_paths: Mapping[str, Path],
                    compare_dirs: Mapping[tuple[str, str], Path],
                    bench_dirs: Mapping[str, Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """The report's bake-off table: selector, size, overlap with every other dataset, mean
    response length, W/T/L against random (both orders; AlpaGasus and CodecLM rules), CRR and
    the lm-eval deltas against the base; each read from the files the steps wrote."""
    chosen = [d for d in datasets if d.bakeoff]
    if not chosen:
        return [], []
    facts = {d.name: dataset_facts(d.name, data_paths[d.name]) for d in chosen}
    deltas = _lmeval_deltas(bench_dirs)
    head = (["dataset", "selector", "rows"] + [f"∩ {d.name}" for d in chosen]
            + ["mean length", "vs random W/T/L", "vs random CodecLM W/T/L", "CRR",
               "lm-eval Δ vs base"])
    lines = ["## Selection bake-off", "",
             "Every selector chose the same number of rows from the same pool. ∩: rows shared "
             "with each other dataset. W/T/L: the adapter tuned on the dataset against the one "
             "tuned on `random`, every question judged in both orders (AlpaGasus: a win in one "
             "order and a tie in the other counts as a win; CodecLM: a win needs both orders). "
             "Length: response tokens (words and punctuation).", ""]
    rows: list[list[Any]] = []
    out: list[dict[str, Any]] = []
    for d in chosen:
        f = facts[d.name]
        overlap = {o.name: len(f.rows & facts[o.name].rows) for o in chosen}
        versus = _versus_random(d.name, compare_dirs)
        ag, cl = versus.get("alpagasus") or {}, versus.get("codeclm") or {}
        wtl = (f"{ag.get('win', 0)}/{ag.get('tie', 0)}/{ag.get('lose', 0)}" if ag else "–")
        cwtl = (f"{cl.get('win', 0)}/{cl.get('tie', 0)}/{cl.get('lose', 0)}" if cl else "–")
        crr = f"{100 * cl['crr']:.1f}%" if cl.get("crr") is not None else "–"
        delta = deltas.get(d.name) or {}
        delta_text = ", ".join(f"{k} {v:+.4f}" for k, v in delta.items()) or "–"
        rows.append([d.name, d.rule, len(f.rows)] + [overlap[o.name] for o in chosen]
                    + [f"{f.mean_length:.1f}" if f.mean_length is not None else "–", wtl, cwtl,
                       crr, delta_text])
        out.append({"dataset": d.name, "selector": d.rule, "rows": len(f.rows),
                    "overlap": overlap, "mean_length": f.mean_length,
                    "vs_random": versus or None, "lmeval_delta": delta})
    lines += _md_table(head, rows)
    lines += ["", "Random-k and longest-k are the baselines a selector has to beat (Zhao et "
              "al. 2024: the 1,000 longest responses beat AlpaGasus-1k and LIMA-1k; at scale "
              "many selectors fall below random).", ""]
    return lines, out


def _versus_random(name: str, compare_dirs: Mapping[tuple[str, str], Path]) -> dict[str, Any]:
    """`name`'s totals against random, from the compare run (flipped if random was A)."""
    if name == "random":
        return {}
    for (a, b), run_dir in compare_dirs.items():
        if {a, b} != {name, "random"}:
            continue
        total = read_json(run_dir / "report.json", {}).get("total") or {}
        if a == name:
            return total
        flipped = {}
        for rule in ("alpagasus", "codeclm"):
            t = total.get(rule) or {}
            if t:
                n = t.get("win", 0) + t.get("tie", 0) + t.get("lose", 0)
                flipped[rule] = {"win": t.get("lose", 0), "tie": t.get("tie", 0),
                                 "lose": t.get("win", 0),
                                 "crr": (t.get("lose", 0) + t.get("tie", 0)) / n if n else None}
        return flipped
    return {}


def _lmeval_deltas(bench_dirs: Mapping[str, Path]) -> dict[str, dict[str, float]]:
    """{dataset: {"task metric": value - base's}} from the benchmark runs' summary.json."""
    from synthcodec.lmeval import SUMMARY_JSON

    if "base" not in bench_dirs:
        return {}
    def values(label: str) -> dict[str, float]:
        summary = read_json(Path(bench_dirs[label]) / SUMMARY_JSON, {}) or {}
        return {f"{r['task']} {r['metric']}": float(r["value"]) for r in summary.get("rows", [])
                if r.get("value") is not None}
    base = values("base")
    return {label: {k: v - base[k] for k, v in values(label).items() if k in base}
            for label in bench_dirs if label != "base"}


def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return "–" if value is None else str(value).replace("|", "\\|")
    return (["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])
