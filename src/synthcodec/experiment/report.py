"""The experiment's report: results per comparison, charts, and everything needed to
reproduce it (models, data sizes, judges, seeds, hyper-parameters, versions, step times).

Rebuilt from the files in the experiment directory on every run, so it always matches them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from synthcodec import __version__
from synthcodec.io import iter_rows
from synthcodec.judging.check import CARD_MD, read_card
from synthcodec.llm.spec import names_embedded_model
from synthcodec.report.compare import render_markdown, summarize
from synthcodec.store import atomic_writer, hash_file, read_json, write_json

EMBEDDED = "local"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return _md(value)


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return out


def _verdicts(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "output.jsonl"
    return [row for _, row in iter_rows(path)] if path.exists() else []


def _loss_chart(path: Path, losses: Mapping[str, list[float]]) -> bool:
    if not any(losses.values()):
        return False
    from synthcodec.report import charts

    fig, (ax,) = charts.new_figure()
    for name, values in losses.items():
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.set_title("LoRA training loss per dataset")
    ax.legend()
    fig.tight_layout()
    charts.save(fig, path)
    return True


def write_report(exp: Any, steps: list[tuple[str, bool, float]], *, rate_info: Mapping[str, Any],
                 data_info: Mapping[str, Mapping[str, Any]],
                 data_paths: Mapping[str, Path] | None = None,
                 score_info: Mapping[str, Any] | None = None,
                 train_info: Mapping[str, Mapping[str, Any]],
                 answer_info: Mapping[str, Mapping[str, Any]],
                 adapters: Mapping[str, Path], compare_dirs: Mapping[tuple[str, str], Path],
                 wall: float, bench_dirs: Mapping[str, Path] | None = None,
                 hash_of: Callable[[str], str] = hash_file) -> Path:
    """RUN/report.md and report.json from the steps' results: `steps` are (name, skipped by
    this run, seconds when it ran) in order, the `*_info` what each step returned
    (stages.json's "info"), `hash_of` the experiment's hashes of its input files."""
    root: Path = exp.dir
    smoke = names_embedded_model(exp.base)
    judges = {exp.compare.judge} | ({exp.rate.judge} if exp.rate else set())
    judge_text = (
        "the same embedded 135M model (its verdicts are close to noise)"
        if all(names_embedded_model(j) for j in judges) else ", ".join(f"`{j}`" for j in sorted(judges)))

    train_files = {name: read_json(path / "synthcodec_train.json", {})
                   for name, path in adapters.items()}
    losses = {name: (info.get("result") or {}).get("losses") or []
              for name, info in train_files.items()}
    has_loss_chart = _loss_chart(root / "training_loss.png", losses)

    bench_name = next(iter(answer_info.values()), {}).get("bench", "bench")
    lines = [f"# Experiment `{_md(exp.name)}`: "
             + " vs ".join(d.name for d in exp.datasets) + f" on {bench_name}", ""]
    if smoke:
        lines += [_smoke(judge_text), ""]
    lines += ["## Results", "",
              "Each row: the adapter tuned on dataset A against the one tuned on dataset B, "
              "every question judged in both orders. Wins, ties and losses are A's.", ""]
    results_json = []
    rows = []
    for (a, b), run_dir in compare_dirs.items():
        rep = read_json(run_dir / "report.json", {})
        total = rep.get("total") or {}
        ag, cl = total.get("alpagasus") or {}, total.get("codeclm") or {}
        n = total.get("n") or 0
        rows.append([a, b, n, rep.get("failed", 0),
                     f"{ag.get('win', 0)}/{ag.get('tie', 0)}/{ag.get('lose', 0)}",
                     _fmt(ag.get("score"), ".3f"),
                     f"{cl.get('win', 0)}/{cl.get('tie', 0)}/{cl.get('lose', 0)}",
                     f"{100 * cl['crr']:.1f}%" if cl.get("crr") is not None else "–",
                     f"{100 * total['position_inconsistency']:.0f}%"
                     if total.get("position_inconsistency") is not None else "–",
                     _fmt(total.get("mean_score_a"), ".2f"),
                     _fmt(total.get("mean_score_b"), ".2f")])
        results_json.append({"a": a, "b": b, "run": str(run_dir), **rep})
    lines += _table(["A", "B", "N", "failed", "AlpaGasus W/T/L", "AlpaGasus score (0–2)",
                     "CodecLM W/T/L", "CRR", "position inconsistency", "mean A (1–10)",
                     "mean B (1–10)"], rows)
    lines += ["", "AlpaGasus score = (W − L) / N + 1 (1 = even); CRR = (W + T) / N under the "
              "CodecLM rule (A wins only when both orders agree).", ""]
    lines += _warnings(results_json, data_info)
    checks = judge_checks(root, compare_dirs)
    if checks:
        lines += ["## Judge checks", "",
                  "Each judge was probed first with pairs whose right answer is known "
                  "(`synthcodec judge-check`; its card beside each run):", ""]
        lines += [f"- {c['step']}: {c['line']} ([card]({c['card']}))" for c in checks] + [""]
    for (a, b), run_dir in compare_dirs.items():
        rel = run_dir.relative_to(root)
        lines += [f"![{_md(a)} vs {_md(b)}: win / tie / lose]({rel.as_posix()}/chart.png)", ""]
    if has_loss_chart:
        lines += ["![training loss](training_loss.png)", ""]
    from synthcodec.experiment.datasets import bakeoff_section

    bakeoff_lines, bakeoff_json = bakeoff_section(exp.datasets, data_paths or {},
                                                  compare_dirs, bench_dirs or {})
    lines += bakeoff_lines
    bench_lines, bench_json = benchmark_section(root, bench_dirs or {})
    lines += bench_lines

    # --- setup -------------------------------------------------------------------------
    lines += ["## Setup (everything needed to reproduce it)", "",
              f"Re-run with `synthcodec run {root.as_posix()}/recipe.toml` (a copy of the "
              "recipe); finished steps are skipped, so delete the directory to redo everything.",
              ""]
    base_path = next((f.get("base", {}).get("path") for f in train_files.values() if f), None)
    models = [["base model (tuned)", f"`{exp.base}`" + (f" ({base_path})" if base_path else "")]]
    if exp.rate:
        models.append(["rater (AlpaGasus, 0–5)", f"`{exp.rate.judge}`"])
    models.append(["pairwise judge (1–10, both orders)", f"`{exp.compare.judge}`"])
    models += [[f"answers of `{name}`", f"`hf:{path.relative_to(root).as_posix()}`"]
               for name, path in adapters.items()]
    lines += ["### Models", ""] + _table(["role", "model"], models) + [""]

    if exp.rate:
        r = exp.rate
        lines += ["### Data", "",
                  f"Pool: `{_md(r.data)}` (sha256 {hash_of(r.data)[:16]}…), first "
                  f"{r.limit if r.limit else 'all'} rows rated on *{_md(r.dimension)}* "
                  f"({rate_info.get('rated', '?')} rated, {rate_info.get('failed', 0)} failed; "
                  f"judge max tokens {r.max_tokens}, re-asks {r.reasks}).", ""]
    else:
        lines += ["### Data", ""]
    if exp.score is not None:
        sc, info = exp.score, score_info or {}
        pool = ("the same pool" if exp.rate else
                f"pool `{_md(sc.data)}`, first {sc.limit if sc.limit else 'all'} rows")
        lines += [f"Scored ({pool}): IFD by `{_md(sc.model)}`, target IFD (when asked) by the "
                  f"base model, length, random key (seed {sc.seed}); {info.get('scored', '?')} "
                  f"scored, {info.get('rejected', 0)} rejected, {info.get('failed', 0)} failed "
                  "(`score/`).", ""]
    drows = []
    for d in exp.datasets:
        info = data_info.get(d.name, {})
        mean = info.get("score_mean")
        scores = (f"{mean:.2f} ({info['score_min']:g}–{info['score_max']:g})"
                  if mean is not None else "–")
        drows.append([d.name, d.rule, info.get("rows"), info.get("pool"), scores,
                      f"data/{d.name}.json"])
    lines += _table(["dataset", "rule", "rows", "of pool", "mean score (range)", "file"], drows)
    pool_mean = next((i.get("pool_score_mean") for i in data_info.values()
                      if i.get("pool_score_mean") is not None), None)
    if pool_mean is not None:
        lines += ["", f"Mean score of the whole rated pool: {pool_mean:.2f}."]
    lines += [""]

    t_rows = []
    keys = [("steps", "steps"), ("epochs", "epochs"), ("batch_size", "batch"),
            ("micro_batch_size", "micro-batch"), ("learning_rate", "peak lr"),
            ("lr_schedule", "schedule"), ("lora_r", "LoRA r"), ("lora_alpha", "alpha"),
            ("max_length", "max length"), ("seed", "seed"), ("device", "device"),
            ("dtype", "dtype")]
    for name, info in train_info.items():
        cfg = info.get("config") or {}
        first, last = info.get("first_loss"), info.get("final_loss")
        t_rows.append([name] + [cfg.get(k) for k, _ in keys] + [
            f"{first:.3f} → {last:.3f}" if first is not None and last is not None else "–",
            info.get("train_tokens"), f"{info.get('seconds', 0):.0f}s"])
    lines += ["### Training (LoRA SFT, loss on answer tokens only)", ""]
    lines += _table(["adapter"] + [label for _, label in keys] + ["loss first → last",
                                                                 "answer tokens", "time"], t_rows)
    lines += ["", "Optimizer AdamW (betas 0.9/0.95, no weight decay, grad clip 1.0), LoRA on "
              "all linear layers, dropout 0.05 (see docs/training.md).", ""]

    b = exp.bench
    a_rows = [[name, info.get("answers"), info.get("truncated")]
              for name, info in answer_info.items()]
    lines += ["### Benchmark", "",
              f"`{_md(b.path)}` (sha256 {hash_of(b.path)[:16]}…, format {bench_name}), "
              f"first {b.limit if b.limit else 'all'} questions; temperature {b.temperature:g}, "
              f"max tokens {b.max_tokens}" + (f", system prompt {b.system!r}" if b.system else "")
              + ".", ""]
    lines += _table(["adapter", "answers", "cut at max tokens"], a_rows) + [""]
    lines += ["### Judge", "",
              f"`{_md(exp.compare.judge)}` with the packaged Vicuna-style pairwise prompt, "
              f"temperature 0, max tokens {exp.compare.judge_max_tokens}, re-asks "
              f"{exp.compare.reasks}; every pair judged with A first and with B first.", ""]

    seeds = {"dataset selection": {d.name: d.seed for d in exp.datasets
                                   if d.signal == "random"},
             "training (data order, LoRA init)": exp.train.seed}
    picks = ", ".join(f"{k} {v}" for k, v in seeds["dataset selection"].items()) or "none random"
    lines += ["### Seeds", "", f"- random dataset draws: {picks}",
              f"- training (data order, LoRA init): {exp.train.seed}",
              "- rater, answers and judge: temperature "
              f"0 / {exp.bench.temperature:g} / 0 (greedy at 0)", ""]

    versions = next((f.get("versions") for f in train_files.values() if f.get("versions")), {})
    versions = {"synthcodec": __version__, "python": platform.python_version(), **versions}
    lines += ["### Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]

    lines += ["### Steps", ""]
    lines += _table(["step", "this run", "seconds (when it ran)"],
                    [[name, "skipped (done earlier)" if skipped else "ran", f"{seconds:.1f}"]
                     for name, skipped, seconds in steps])
    total = sum(seconds for _, _, seconds in steps)
    lines += ["", f"All steps: {total:.0f}s of work; this invocation: {wall:.0f}s.", ""]

    # --- per comparison, the compare command's own report, with categories ----------------
    for (a, b), run_dir in compare_dirs.items():
        verdicts = _verdicts(run_dir)
        if not verdicts:
            continue
        failed = read_json(run_dir / "report.json", {}).get("failed", 0)
        body = render_markdown(summarize(verdicts), label_a=a, label_b=b,
                               judge=exp.compare.judge, chart=None, failed=failed)
        body = body.split("\n## How to read this")[0].rstrip()
        body = "\n".join("##" + ln if ln.startswith("#") else ln for ln in body.splitlines())
        lines += [body, "", f"Verdicts: `{run_dir.relative_to(root).as_posix()}/output.jsonl`.",
                  ""]

    path = root / "report.md"
    with atomic_writer(path) as fh:
        fh.write("\n".join(lines).rstrip() + "\n")
    write_json(root / "report.json", {
        "name": exp.name, "smoke_scale": smoke, "base": exp.base, "base_path": base_path,
        "rater": exp.rate.judge if exp.rate else None, "judge": exp.compare.judge,
        "rate": rate_info, "score": dict(score_info or {}), "datasets": data_info,
        "bakeoff": bakeoff_json, "train": train_info, "answers": answer_info,
        "comparisons": results_json, "benchmarks": bench_json, "seeds": seeds,
        "judge_checks": checks,
        "versions": versions,
        "steps": [{"name": name, "status": "skipped" if skipped else "done",
                   "seconds": round(seconds, 3)} for name, skipped, seconds in steps],
        "wall_seconds": round(wall, 3),
    })
    return path


def judge_checks(root: Path, compare_dirs: Mapping[tuple[str, str], Path]
                 ) -> list[dict[str, Any]]:
    """The judge card of the rate step and of each comparison, where one was written."""
    dirs = [("rate", root / "rate")] + [(f"compare {a} vs {b}", d)
                                        for (a, b), d in compare_dirs.items()]
    out = []
    for step, run_dir in dirs:
        card = read_card(run_dir)
        if card:
            out.append({"step": step, "verdict": card.get("verdict"), "line": card.get("line"),
                        "card": (run_dir / CARD_MD).relative_to(root).as_posix()})
    return out


def benchmark_section(root: Path, bench_dirs: Mapping[str, Path]
                      ) -> tuple[list[str], dict[str, Any]]:
    """The standard-benchmark table: one row per task and metric, the base's value and each
    adapter's with its difference from the base (the papers' "no loss of general ability"
    check). Read from each run's summary.json."""
    from synthcodec.lmeval import SUMMARY_JSON

    if not bench_dirs:
        return [], {}
    summaries = {label: read_json(Path(d) / SUMMARY_JSON) for label, d in bench_dirs.items()}
    present = {label: s for label, s in summaries.items() if s}
    if not present:
        return [], {}
    labels = list(bench_dirs)
    base = present.get("base")
    keys: list[tuple[str, str, str]] = []
    values: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {}
    for label in labels:
        values[label] = {}
        for row in (present.get(label) or {}).get("rows", []):
            key = (row["task"], row["metric"], row["filter"])
            values[label][key] = row
            if key not in keys:
                keys.append(key)
    head = ["task", "metric", "docs"] + [
        "base" if label == "base" else f"{label} (Δ vs base)" for label in labels]
    rows = []
    for key in keys:
        task, metric, filt = key
        docs = next((v[key].get("n") for v in values.values() if key in v), None)
        cells: list[Any] = [task, metric if filt == "none" else f"{metric} ({filt})", docs]
        base_value = values.get("base", {}).get(key, {}).get("value")
        for label in labels:
            row = values[label].get(key)
            if row is None:
                cells.append("–")
            elif label == "base" or base_value is None:
                cells.append(f"{row['value']:.4f}")
            else:
                cells.append(f"{row['value']:.4f} ({row['value'] - base_value:+.4f})")
        rows.append(cells)
    any_summary = base or next(iter(present.values()))
    limit, shots = any_summary.get("limit"), any_summary.get("shots")
    data_dir = any_summary.get("data_dir")
    lines = ["## General ability (lm-evaluation-harness)", "",
             "Each adapter and the base model on standard benchmarks, run by "
             f"lm-evaluation-harness {any_summary.get('harness_version')} "
             f"({'default shots per task' if shots is None else f'{shots} shots'}"
             f"{f', first {limit} documents per task' if limit else ''}"
             f"{f', data from {data_dir}' if data_dir else ''}"
             "). Δ is the adapter's value minus the base's: fine-tuning on better data should "
             "not cost general ability.", ""]
    lines += _table(head, rows)
    missing = [label for label in labels if label not in present]
    if missing:
        lines += ["", f"No results yet for: {', '.join(missing)}."]
    rel = {label: d.relative_to(root).as_posix() for label, d in bench_dirs.items()}
    lines += ["", "Results: " + ", ".join(f"`{p}/results.json`" for p in rel.values())
              + " (lm-eval's own), with `summary.md` beside each.", ""]
    if limit:
        lines += ["With a document limit these numbers are a smoke test, not comparable to "
                  "published scores.", ""]
    data = {label: {"run": rel[label], "rows": (present.get(label) or {}).get("rows", [])}
            for label in labels}
    return lines, data


def _warnings(results: list[dict[str, Any]], data_info: Mapping[str, Mapping[str, Any]]
              ) -> list[str]:
    """Say plainly when the numbers carry little signal."""
    notes = []
    for r in results:
        total = r.get("total") or {}
        inc = total.get("position_inconsistency")
        if inc is not None and inc >= 0.5:
            notes.append(f"- {r['a']} vs {r['b']}: the two orders disagree on {100 * inc:.0f}% "
                         "of the questions, so the judge mostly picked by position; these "
                         "verdicts carry little signal (use a stronger judge).")
    pool = [(i.get("score_min"), i.get("score_max"), i.get("score_mean"))
            for i in data_info.values() if i.get("pool_score_mean") is not None]
    means = [m for _, _, m in pool if m is not None]
    lows = [lo for lo, _, _ in pool if lo is not None]
    highs = [hi for _, hi, _ in pool if hi is not None]
    if means and max(highs) - min(lows) <= 1.0:
        notes.append(f"- The rater's scores span only {min(lows):g}–{max(highs):g} across the "
                     "datasets, so the selection by score barely differs from a random one "
                     "(use a stronger rater).")
    return (["**Caveats**", ""] + notes + [""]) if notes else []


SMOKE_NOTE = (
    "**Smoke scale.** The base model is the embedded SmolLM2-135M-Instruct, tuned on a few "
    "dozen rows for a few steps on a CPU, and judged by {judge}. This shows the pipeline "
    "working end to end; it does not measure the papers' effect, which was found with "
    "7B-13B models, thousands of rows and strong judges (GPT-4 / Claude class). For a real "
    "experiment point `base` at a capable model on a GPU and the judges at a strong model "
    "behind an OpenAI-compatible server."
)


def _smoke(judge_text: str) -> str:
    return "> " + SMOKE_NOTE.format(judge=judge_text)
