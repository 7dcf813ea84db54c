"""Click options for the CodecLM knobs, shared by the stage commands and `generate`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from synthcodec.codeclm.config import CodecConfig
from synthcodec.settings import click_options, from_kwargs


def codec_options(*names: str, defaults: dict[str, Any] | None = None) -> Callable[[Any], Any]:
    """Add the options for the named CodecConfig fields (paper defaults shown in --help)."""
    return click_options(CodecConfig, *names, defaults=defaults)


def config_from(kwargs: dict[str, Any]) -> CodecConfig:
    """Pop the CodecConfig options out of a command's kwargs (absent ones keep defaults)."""
    return CodecConfig(**from_kwargs(CodecConfig, kwargs))


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
