"""A recipe's [generate] table, parsed straight into the typed settings `generate` takes.

Keys are `generate`'s options under their long names (`per-metadata` or `per_metadata`,
`size`, `rubrics`, `judge-json`, ...) plus its arguments by name (`seeds`, `output`). Each
value is checked by the same type as the option (ranges included), and an unknown key or a
bad value names the recipe, the table and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import click

from synthcodec.codeclm.cli_options import CODEC_OPTIONS
from synthcodec.codeclm.config import CodecConfig
from synthcodec.errors import UserError
from synthcodec.judgecheck import Say, silent
from synthcodec.options import run_options
from synthcodec.session import RunOptions

# Keys of `generate` itself, with the type each takes.
_GENERATE: dict[str, Any] = {
    "seeds": str, "strong": str, "target": str, "output": str, "n": click.IntRange(1),
    "oversample": click.FloatRange(1.0), "format": str, "prompts": str, "field": dict,
    "judge_check_probes": click.IntRange(0, 100), "no_judge_check": bool,
}


def _run_keys() -> dict[str, tuple[str, Any]]:
    """RunOptions fields under their option names, from the options themselves
    (options.run_options): `cache` is --cache (cache_path), `quiet` turns progress off."""
    out: dict[str, tuple[str, Any]] = {}
    for opt in run_options(lambda: None).__click_params__:  # type: ignore[attr-defined]
        long = next(o for o in opt.opts if o.startswith("--"))
        kind = (bool if opt.is_flag else list if opt.multiple else
                str if isinstance(opt.type, (click.Path, click.types.StringParamType))
                else opt.type)
        name = "progress" if opt.name == "quiet" else opt.name
        out[long.removeprefix("--").replace("-", "_")] = (name, kind)
    return out


_RUN = _run_keys()
# CodecConfig fields under their option names (`size` is pool_size, `rubrics` n_rubrics, ...).
_CODEC: dict[str, str] = {
    flags[0].split("/")[0].removeprefix("--").replace("-", "_"): name
    for name, (flags, _, _) in CODEC_OPTIONS.items()
}


@dataclass
class GenerateJob:
    """Everything one `generate` run takes, typed."""

    seeds: str
    strong: str
    target: str
    run_dir: str
    n: int = 2000
    cfg: CodecConfig = field(default_factory=CodecConfig)
    options: RunOptions = field(default_factory=RunOptions)
    mapping: dict[str, str] = field(default_factory=dict)
    oversample: float = 2.0
    prompts_dir: str | None = None
    export_format: str | None = None
    judge_check: int | None = None  # probes per kind; None: the default; 0: none

    def describe(self) -> str:
        changed = {f.name: getattr(self.cfg, f.name) for f in fields(self.cfg)
                   if getattr(self.cfg, f.name) != getattr(CodecConfig(), f.name)}
        extra = ", ".join(f"{k}={v}" for k, v in changed.items())
        return (f"{self.seeds} --strong {self.strong} --target {self.target} -n {self.n} "
                f"-o {self.run_dir}" + (f" ({extra})" if extra else ""))

    def run(self, say: Say = silent) -> Any:
        """Run the job; `say` hears its lines (default: nothing is printed)."""
        from synthcodec.codeclm.pipeline import generate

        return generate(seeds=self.seeds, run_dir=self.run_dir, strong=self.strong,
                        target=self.target, n=self.n, cfg=self.cfg, options=self.options,
                        mapping=self.mapping, oversample=self.oversample,
                        prompts_dir=self.prompts_dir, export_format=self.export_format,
                        say=say,
                        **({} if self.judge_check is None else {"judge_check": self.judge_check}))


def _convert(kind: Any, value: Any, where: str, key: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: {key} is a flag: write true or false")
        return value
    if kind is list:  # a repeatable option: one value or a list
        values = value if isinstance(value, list) else [value]
        return tuple(str(v) for v in values)
    if kind is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: {key} must be a table, e.g. {key} = {{instruction = "
                            '"text"}')
        return {str(k): str(v) for k, v in value.items()}
    if kind is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: {key} must be a string")
        return value
    if isinstance(value, bool):  # TOML true is not a number
        raise UserError(f"{where}: {key} must be a number")
    try:
        return kind.convert(value, None, None) if hasattr(kind, "convert") else kind(value)
    except (click.BadParameter, ValueError, TypeError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        raise UserError(f"{where}: {key}: {message}") from None


def generate_job(table: Mapping[str, Any], where: str) -> GenerateJob:
    """The [generate] table as a GenerateJob; UserError naming the key when it is wrong."""
    given: dict[str, Any] = {}
    codec: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key in _GENERATE:
            given[key] = _convert(_GENERATE[key], value, where, raw_key)
        elif key in _CODEC or key in ("judge_text",):
            if key == "judge_text":  # --judge-text is judge-json = false
                codec["judge_json"] = not _convert(bool, value, where, raw_key)
                continue
            name = _CODEC[key]
            kind = CODEC_OPTIONS[name][1] or bool
            codec[name] = _convert(kind, value, where, raw_key)
        elif key in _RUN:
            name, kind = _RUN[key]
            converted = _convert(kind, value, where, raw_key)
            run[name] = (not converted) if key == "quiet" else converted
        else:
            known = sorted({*_GENERATE, *_CODEC, *_RUN})
            raise UserError(f"{where}: unknown key {raw_key!r}; known: {', '.join(known)}")
    for required in ("seeds", "strong", "target", "output"):
        if required not in given:
            raise UserError(f"{where}: {required} is required")
    from synthcodec.codeclm.pipeline import EXPORT_NAMES

    if given.get("format") is not None and given["format"] not in EXPORT_NAMES:
        raise UserError(f"{where}: format must be one of {', '.join(sorted(EXPORT_NAMES))}")
    return GenerateJob(
        seeds=given["seeds"], strong=given["strong"], target=given["target"],
        run_dir=given["output"], n=given.get("n", 2000), cfg=CodecConfig(**codec),
        options=RunOptions(**run), mapping=given.get("field", {}),
        oversample=given.get("oversample", 2.0), prompts_dir=given.get("prompts"),
        export_format=given.get("format"),
        judge_check=0 if given.get("no_judge_check") else given.get("judge_check_probes"))
