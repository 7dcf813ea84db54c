"""The dataset card `synthcodec push` writes (README.md of the dataset repository): the
method and its papers, the models by name (never their keys), counts, the judge card and
charts, the settings, cost and tokens, the licence, what every field means, and the command
that makes the run again. Local paths are shown by their file names (`public_path`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from synthcodec.judging.check import CARD_MD
from synthcodec.llm.spec import redact_spec
from synthcodec.rundir_reader import Run
from synthcodec.store import dumps

CODECLM = "https://arxiv.org/abs/2404.05875"
ALPAGASUS = "https://arxiv.org/abs/2307.08701"

LINEAGE_FIELDS = {
    "generate": {
        "id": "base instruction id `m0007-i2` (metadata entry 7, item 2); stable over iterations",
        "instruction / response": "the pair to train on (`response` is the better of the two answers)",
        "metadata_id, use_case, skills, seed_ids": "the metadata entry (use case + skills) the "
        "instruction was decoded from, and the seed instructions behind it",
        "iteration, action, base_instruction": "1 = the base instruction; later iterations were "
        "rewritten by the strong model following `action` (Self-Rubrics)",
        "strong_answer, target_answer": "both models' answers to the final instruction",
        "scores": "the four pairwise judge scores (1–10): `strong_first` (strong shown as "
        "Assistant 1) and `target_first` (the swapped order)",
        "judge_text": "the judge's own replies for both orders",
        "strong_score, target_score, gap, decision": "the averages over both orders, G = "
        "S(strong) − S(target), and `keep_strong` / `keep_target` (abs(G) > θ)",
        "history": "every earlier iteration: instruction, action, scores, gap, decision (JSON)",
        "review": "set when a person marked the row by hand in `synthcodec view`",
    },
    "rate": {
        "score": "the judge's 0–5 rating of (instruction, input, response) (AlpaGasus)",
        "explanation, judge_text": "the judge's reason and its whole reply",
        "_synthcodec": "record id and input position (joins a row to its input)",
    },
    "compare": {
        "question, answer_a, answer_b": "the question and both models' answers",
        "score_a_first, score_b_first, score_a_second, score_b_second": "the judge's scores "
        "with A shown first, then with B shown first",
        "alpagasus, codeclm": "A's outcome under each paper's rule",
        "judge_first, judge_second": "the judge's replies for both orders",
    },
}


_LOCAL_PATH = re.compile(r"(?P<prefix>[a-z][a-z0-9_-]*:)?(?P<path>/(?!/)[^\n]*)")


def public_path(text: str) -> str:
    """A local absolute path (or a model spec holding one, `gguf:/models/x.gguf`) as its
    file name: a card is published, the user's directories are not. Other text is kept;
    only a path whose folder exists here counts (so a "/no_think" system prompt stays)."""
    match = _LOCAL_PATH.fullmatch(text)
    if match is None:
        return text
    path = Path(match["path"])
    if path.parent == Path(path.anchor) or not path.parent.is_dir():
        return text
    return (match["prefix"] or "") + path.name


def _public_tree(value: Any) -> Any:
    if isinstance(value, str):
        return public_path(value)
    if isinstance(value, dict):
        return {k: _public_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_public_tree(v) for v in value]
    return value


def reproduce_command(run: Run) -> str:
    """The command that makes this run again (reconstructed from its config); local paths
    are shown by their file names (`public_path`)."""
    def q(value: str) -> str:
        return shlex.quote(public_path(value))

    if run.kind == "generate":
        st = run.json("stages.json")
        enc = (st.get("encode") or {}).get("config", {})
        meta = (st.get("metadata") or {}).get("config", {})
        dec = (st.get("decode") or {}).get("config", {})
        rub = (st.get("rubrics") or {}).get("config", {})
        loop = (st.get("loop") or {}).get("config", {})
        models = run.models()
        parts = ["synthcodec generate", q(str(enc.get("seeds", "SEEDS.jsonl"))),
                 "--strong", q(models.get("strong", "MODEL")), "--target",
                 q(models.get("target", "MODEL")), "-n", str((st.get("loop") or {}).get(
                     "requested", run.json("summary.json").get("requested", 2000)))]
        for flag, value in (("--size", meta.get("pool_size")), ("--seed", meta.get("seed")),
                            ("--per-metadata", dec.get("per_metadata")),
                            ("--rouge-threshold", dec.get("rouge_threshold")),
                            ("--rubrics", rub.get("n_rubrics")),
                            ("--max-iterations", loop.get("max_iterations")),
                            ("--theta", loop.get("theta")),
                            ("--temperature", loop.get("temperature")),
                            ("--answer-temperature", loop.get("answer_temperature")),
                            ("--max-tokens", loop.get("max_tokens")),
                            ("--judge-max-tokens", loop.get("judge_max_tokens")),
                            ("--judge-reasks", loop.get("judge_reasks"))):
            if value is not None:
                parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if loop.get("judge_answer") in ("json", "text"):
            parts.append(f"--judge-{loop['judge_answer']}")
        for ours, theirs in (enc.get("fields") or {}).items():
            parts += ["--field", q(f"{ours}={theirs}")]
        parts += ["-o", q(run.path.name)]
        return " ".join(parts)
    cfg = run.config
    models = run.models()
    if run.kind == "compare":
        parts = ["synthcodec compare"]
        benches = cfg.get("benchmarks") or []
        if len(benches) == 1:
            parts += [q(str(benches[0].get("a"))), q(str(benches[0].get("b")))]
        else:
            for b in benches:
                parts += ["--pair", q(str(b.get("name"))), q(str(b.get("a"))), q(str(b.get("b")))]
        parts += ["--judge", q(models.get("judge", "local")),
                  "--judge-max-tokens", str(cfg.get("judge_max_tokens")),
                  "--reasks", str(cfg.get("judge_reasks"))]
        if cfg.get("judge_answer") in ("json", "text"):
            parts.append(f"--judge-{cfg['judge_answer']}")
        return " ".join([*parts, "-o", q(run.path.name)])
    parts = [f"synthcodec {run.kind}", q(str(cfg.get("input", "INPUT")))]
    for role, spec in models.items():
        parts += [f"--{role}" if run.kind == "rate" else "--model", q(spec)]
    for key, flag in (("dimension", "--dimension"), ("reasks", "--reasks"),
                      ("max_tokens", "--max-tokens")):
        if cfg.get(key) is not None:
            parts += [flag, q(str(cfg[key]))]
    for ours, theirs in (cfg.get("fields") or {}).items():
        if (ours, theirs) != ("response", "output") or run.kind != "rate":
            parts += ["--field", q(f"{ours}={theirs}")]
    return " ".join([*parts, "-o", q(run.path.name)])


def _license_id(text: str) -> str:
    return text if re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", text) else "unknown"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def build_card(run: Run, repo_id: str, *, kept: int, rejected: int, failed: int, reviewed: int,
               fmt: str, license_text: str, with_rejected: bool,
               charts: list[tuple[str, str]]) -> Any:
    from huggingface_hub import DatasetCard, DatasetCardData

    configs = [{"config_name": "default", "data_files": [{"split": "train",
                                                         "path": "data/train-*.parquet"}]}]
    if with_rejected:
        configs.append({"config_name": "rejected", "data_files": [
            {"split": "train", "path": "rejected/train-*.parquet"}]})
    method = {"generate": "codeclm", "rate": "alpagasus", "compare": "llm-as-a-judge"}.get(
        run.kind, run.kind)
    data = DatasetCardData(
        license=_license_id(license_text), pretty_name=repo_id.split("/")[-1],
        tags=["synthetic", "synthcodec", method], task_categories=["text-generation"],
        size_categories=[_size_category(kept)], configs=configs)
    models = run.models()
    usage = run.usage()
    cost = run.cost(usage)
    lines: list[str] = [f"# {repo_id.split('/')[-1]}", ""]
    if run.kind == "generate":
        loop = (run.json("stages.json").get("loop") or {}).get("config", {})
        lines += [
            "Instruction–response pairs made with **CodecLM** (Wang et al., 2024, "
            f"[arXiv 2404.05875]({CODECLM})) by synthcodec: a strong model "
            "encoded seed instructions into metadata (use case + skills), decoded new "
            "instructions from it, made them harder with rubrics and actions it wrote itself "
            "(Self-Rubrics), and judged its own answer against the target model's in both "
            "orders (Contrastive Filtering). A pair is kept only when the averaged gap "
            f"|S(strong) − S(target)| > θ = {loop.get('theta', 3):g}, with the better answer; "
            "otherwise the instruction is rewritten, at most "
            f"{loop.get('max_iterations', 4)} iterations. Judging every pair in both orders "
            "(to cancel the judge's position bias) follows the pairwise evaluation of "
            f"AlpaGasus (Chen et al., ICLR 2024, [arXiv 2307.08701]({ALPAGASUS})).", ""]
    elif run.kind == "rate":
        lines += [
            "Rows rated 0–5 by an LLM judge, as in **AlpaGasus** (Chen et al., ICLR 2024, "
            f"[arXiv 2307.08701]({ALPAGASUS})), by synthcodec. The paper keeps rows scoring "
            "≥ 4.5; every rated row is here with its `score`, so you can choose the threshold "
            "(`synthcodec select` does it locally).", ""]
    elif run.kind == "compare":
        lines += [
            "Pairwise LLM-judge verdicts: every question's two answers scored 1–10 in both "
            "orders, with the outcome under the AlpaGasus rule "
            f"([arXiv 2307.08701]({ALPAGASUS})) and the CodecLM rule "
            f"([arXiv 2404.05875]({CODECLM})).", ""]
    else:
        lines += [f"Rows written by `synthcodec {run.kind}`.", ""]
    lines += ["## Models", ""]
    lines += [f"- **{role}**: `{public_path(redact_spec(spec))}`"
              for role, spec in models.items()] or ["- (none)"]
    lines += ["", "Model endpoints are named, never their keys.", "", "## Counts", "",
              "| split | rows |", "|---|---|", f"| kept (`default`) | {kept} |",
              f"| rejected{' (`rejected`)' if with_rejected else ' (not uploaded)'} | {rejected} |",
              f"| failed (not uploaded) | {failed} |", ""]
    if reviewed:
        lines += [f"{reviewed} rows were reviewed by hand (`review.jsonl`): a row marked "
                  "rejected is left out of the kept split, one marked kept is kept.", ""]
    summary = run.json("summary.json")
    if run.kind == "generate" and summary:
        lines += [f"Stopped: {summary.get('stop')}; kept per iteration: "
                  f"{summary.get('kept_by_iteration')}; near-duplicates removed: "
                  f"{summary.get('near_duplicates_removed')}; metadata coverage: "
                  f"{summary.get('metadata_coverage')}.", ""]
    t = run.json("report.json").get("total") if run.kind == "compare" else None
    if t:
        lines += [f"AlpaGasus W/T/L: {t.get('alpagasus')}; CodecLM: {t.get('codeclm')}; "
                  f"position inconsistency: {t.get('position_inconsistency')}.", ""]
    card_md = run.path / CARD_MD
    if card_md.exists():  # the judge check the run made first: how far its judge can be trusted
        body = card_md.read_text(encoding="utf-8").split("\n", 1)
        lines += ["## Judge card", "", body[1].strip() if len(body) > 1 else "", ""]
    if charts:
        lines += ["## Charts", ""]
        lines += [f"![{title}]({path})" for path, title in charts]
        lines += [""]
    lines += ["## Settings", "", "```json",
              dumps(_public_tree(run.settings()), indent=2, sort_keys=True), "```", ""]
    lines += ["## Cost and tokens", "", "| stage | requests | tokens in | tokens out | USD |",
              "|---|---|---|---|---|"]
    for stage, u in usage.items():
        lines.append(f"| {stage} | {u.get('requests', 0)} | {u.get('prompt_tokens', 0)} | "
                     f"{u.get('completion_tokens', 0)} | {float(u.get('usd') or 0):.4f} |")
    lines += [f"| **total** | {cost['requests']} | | {cost['tokens']} (all) | "
              f"{cost['usd']:.4f} |", ""]
    lines += ["## Licence", "", f"Licence of the inputs: **{license_text}**. Generated rows "
              "inherit the terms of the seed/input data and of the models' outputs.", ""]
    lines += ["## Fields", "", f"Format: `{fmt}`" + (
        " (the training columns first; the lineage columns follow, prefixed `lineage_` where "
        "a name would clash)." if fmt != "lineage" else " (the run's rows as they are)."),
        "Nested values (scores, history, judge replies) are JSON text.", "",
        "| field | meaning |", "|---|---|"]
    for name, meaning in LINEAGE_FIELDS.get(run.kind, {}).items():
        lines.append(f"| `{name}` | {meaning} |")
    lines += ["", "## Reproduce", "", "```bash", reproduce_command(run), "```", "",
              "Same seeds/inputs and models give the same run (sampling aside); the request "
              "cache makes a re-run free. Local files are named without their folders.", ""]
    return DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n"
                                     "{{ body }}\n", body="\n".join(lines))
