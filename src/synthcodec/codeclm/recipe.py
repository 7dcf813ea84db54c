"""A recipe's [generate] table, parsed straight into the typed settings `generate` takes.

Keys are `generate`'s options under their long names (`per-metadata` or `per_metadata`,
`size`, `rubrics`, `judge-json`, ...), read from the settings dataclasses that make those
options (CodecConfig, RunOptions: synthcodec.settings), plus its arguments by name
(`seeds`, `output`). Each value is checked by the same type as the option (ranges
included), and an unknown key or a bad value names the recipe, the table and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import click

from synthcodec.codeclm.config import CodecConfig
from synthcodec.errors import UserError
from synthcodec.judging.check import Say, silent
from synthcodec.session import RunOptions
from synthcodec.settings import convert, recipe_keys

# Keys of `generate` itself, with the type each takes.
_GENERATE: dict[str, Any] = {
    "seeds": str, "strong": str, "target": str, "output": str, "n": click.IntRange(1),
    "oversample": click.FloatRange(1.0), "format": str, "prompts": str, "field": dict,
    "judge_check_probes": click.IntRange(0, 100), "no_judge_check": bool,
}
_RUN = recipe_keys(RunOptions)  # `cache` is --cache (cache_path), `quiet` is progress=False
_CODEC = recipe_keys(CodecConfig)  # `size` is pool_size, `rubrics` n_rubrics, ...


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


def generate_job(table: Mapping[str, Any], where: str) -> GenerateJob:
    """The [generate] table as a GenerateJob; UserError naming the key when it is wrong."""
    given: dict[str, Any] = {}
    codec: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key in _GENERATE:
            given[key] = convert(None, _GENERATE[key], value, where, raw_key)
        elif key == "judge_text":  # --judge-text is judge-json = false
            codec["judge_json"] = not convert(None, bool, value, where, raw_key)
        elif key in _CODEC:
            name, option = _CODEC[key]
            codec[name] = convert(option, None, value, where, raw_key)
        elif key in _RUN:
            name, option = _RUN[key]
            run[name] = convert(option, None, value, where, raw_key)
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
