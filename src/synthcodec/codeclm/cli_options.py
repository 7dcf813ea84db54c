"""Click options for the CodecLM knobs, shared by the stage commands and `generate`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from synthcodec.codeclm.config import CodecConfig

_D = CodecConfig()
# CodecConfig field -> (option names, click type, help): the options here, and the keys a
# recipe's [generate] table takes (codeclm.recipe)
CODEC_OPTIONS: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "temperature": (("--temperature",), click.FloatRange(0, 2),
                    "Sampling temperature of encode, decode, rubrics and improve."),
    "answer_temperature": (("--answer-temperature",), click.FloatRange(0, 2),
                           "Sampling temperature of the strong and target answers."),
    "max_tokens": (("--max-tokens",), click.IntRange(1), "Max new tokens per generation."),
    "judge_max_tokens": (("--judge-max-tokens",), click.IntRange(1),
                         "Max new tokens per judgement (the scores come first; ~20 tokens in JSON)."),
    "judge_reasks": (("--judge-reasks",), click.IntRange(0),
                     "Re-asks when a judgement has no readable pair of scores."),
    "judge_json": (("--judge-json/--judge-text",), None,
                   "Ask the judge for JSON {score_1, score_2, explanation} or for the paper's "
                   "score line. Default: JSON for the embedded/GGUF judge, text for HTTP ones."),
    "judge_scores": (("--judge-scores",), click.Choice(["text", "logprobs"]),
                     "The judge's scores as written, or the probability-weighted mean of the "
                     "score tokens (needs token log-probabilities; docs/judging.md)."),
    "judge_evidence_first": (("--judge-evidence-first/--judge-score-first",), None,
                             "The judge explains first and gives the scores last, or the "
                             "papers' scores-first prompt."),
    "pool_size": (("--size",), click.IntRange(1), "Metadata pool size."),
    "per_metadata": (("--per-metadata",), click.IntRange(1),
                     "Base instructions decoded per metadata entry."),
    "n_rubrics": (("--rubrics",), click.IntRange(1), "Rubrics (and actions) per metadata entry."),
    "max_iterations": (("--max-iterations",), click.IntRange(1),
                       "Contrastive Filtering rounds per instruction, the base one included."),
    "theta": (("--theta",), click.FloatRange(0, 9),
              "Keep a pair when |S(strong) - S(target)| > theta (1-10 scale)."),
    "rouge_threshold": (("--rouge-threshold",), click.FloatRange(0, 1, min_open=True),
                        "Near-duplicate when ROUGE-L F1 with an earlier instruction exceeds this."),
    "seed": (("--seed",), int, "Random seed: metadata mix-and-match and improve actions."),
    "parse_tries": (("--parse-tries",), click.IntRange(1),
                    "Samples tried when a reply cannot be parsed (decode, rubrics, improve)."),
}


def codec_options(*names: str, defaults: dict[str, Any] | None = None) -> Callable[[Any], Any]:
    """Add the options for the named CodecConfig fields (paper defaults shown in --help)."""
    def decorate(fn: Any) -> Any:
        for name in reversed(names):
            flags, kind, help_text = CODEC_OPTIONS[name]
            default = (defaults or {}).get(name, getattr(_D, name))
            fn = click.option(*flags, name, type=kind, default=default,
                              show_default=default is not None, help=help_text)(fn)
        return fn
    return decorate


def config_from(kwargs: dict[str, Any]) -> CodecConfig:
    """Pop the CodecConfig options out of a command's kwargs (absent ones keep defaults)."""
    values = {name: kwargs.pop(name) for name in list(CODEC_OPTIONS) if name in kwargs}
    return CodecConfig(**{k: v for k, v in values.items() if v is not None})


def prompts_option(fn: Any) -> Any:
    return click.option(
        "--prompts", "prompts_dir", type=click.Path(exists=True, file_okay=False), default=None,
        help="Folder of prompt templates: a codeclm_*.txt file there replaces the packaged one "
             "(copy them from synthcodec/prompts/).")(fn)


def run_dir_argument(fn: Any) -> Any:
    return click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))(fn)


def model_option(role: str, required: bool = False) -> Callable[[Any], Any]:
    help_text = {
        "strong": "The strong model: writes, improves and judges (default: the one RUN used).",
        "target": "The model the data is for (default: the one RUN used).",
    }[role]
    return click.option(f"--{role}", role, default=None, required=required, help=help_text)
