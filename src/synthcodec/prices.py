"""Prices: a table of USD per 1M tokens per model, and what sets them for a run.

Prices are USD per 1M tokens, looked up by the model name of a spec (`openai:NAME`,
`NAME@URL`; a key may also be the whole `NAME@URL`): an exact key first, then glob keys
(`gpt-4o-mini-*`), the longest first. Local models (`local`, `gguf:`, a `.gguf` path, `hf:`,
`fake`: a `local` kind in llm/spec.py) cost $0. A model with no price is counted in tokens only,
never priced by a guess.

Sources, later ones winning: the packaged table below, `$SYNTHCODEC_PRICES` or `--prices
FILE` (TOML or JSON, the same shape as the packaged table), and `--price [KEY=]IN,OUT[,CACHED]`
(KEY: a role of the run, e.g. `judge`, `strong`, `target`, or a model name / glob; without
KEY it prices every model of the run that is not local).
"""

from __future__ import annotations

import fnmatch
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.llm.spec import find_kind, price_names

PRICES_ENV = "SYNTHCODEC_PRICES"

# Keep it small: well-known hosted models only. Edit your own copy with --prices FILE.
DEFAULT_PRICES_TOML = """\
# USD per 1M tokens. input, output; cached_input where the provider discounts cached
# prompt tokens; batch_input / batch_output for the provider's batch API (--batch).
# Source: OpenAI's API pricing page (https://openai.com/api/pricing), as known in 2025-04,
# written down without network access. CHECK BEFORE RELYING ON IT: prices change. Put your
# own numbers in a file (--prices FILE or $SYNTHCODEC_PRICES) or use --price IN,OUT.
source = "openai.com/api/pricing as known 2025-04 (unchecked: verify before relying on it)"

[models."gpt-4o"]
input = 2.50
cached_input = 1.25
output = 10.00
batch_input = 1.25
batch_output = 5.00

[models."gpt-4o-mini"]
input = 0.15
cached_input = 0.075
output = 0.60
batch_input = 0.075
batch_output = 0.30

[models."gpt-4.1"]
input = 2.00
cached_input = 0.50
output = 8.00
batch_input = 1.00
batch_output = 4.00

[models."gpt-4.1-mini"]
input = 0.40
cached_input = 0.10
output = 1.60
batch_input = 0.20
batch_output = 0.80

[models."gpt-4.1-nano"]
input = 0.10
cached_input = 0.025
output = 0.40
batch_input = 0.05
batch_output = 0.20

[models."o3-mini"]
input = 1.10
cached_input = 0.55
output = 4.40
batch_input = 0.55
batch_output = 2.20

[models."gpt-3.5-turbo"]
input = 0.50
output = 1.50
batch_input = 0.25
batch_output = 0.75
"""


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float
    cached_input: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    source: str = ""

    def cost(self, prompt_tokens: float, completion_tokens: float,
             cached_tokens: float = 0.0) -> float:
        cached = min(cached_tokens, prompt_tokens) if self.cached_input is not None else 0.0
        return ((prompt_tokens - cached) * self.input + cached * (self.cached_input or 0.0)
                + completion_tokens * self.output) / 1_000_000

    @property
    def free(self) -> bool:
        return self.input == 0 and self.output == 0

    def for_batch(self) -> "Price":
        """What a request costs in the provider's batch API (--batch): `batch_input` /
        `batch_output` where the table has them, else the normal price (no guessed
        discount: the spend is then an upper bound). Cached input is billed at the batch
        input price unless it is cheaper still."""
        if self.batch_input is None and self.batch_output is None:
            return self
        inp = self.batch_input if self.batch_input is not None else self.input
        out = self.batch_output if self.batch_output is not None else self.output
        cached = self.cached_input if (self.cached_input is not None
                                       and self.cached_input < inp) else None
        return Price(inp, out, cached, self.batch_input, self.batch_output,
                     source=f"{self.source} (batch)")


LOCAL = Price(0.0, 0.0, source="local model: $0")

_FIELDS = ("input", "output", "cached_input", "batch_input", "batch_output")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise UserError(f"{where}: expected a price >= 0 (USD per 1M tokens), got {value!r}")
    return float(value)


@dataclass
class PriceTable:
    """Model name or glob -> Price."""

    entries: dict[str, Price] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any, source: str) -> "PriceTable":
        if not isinstance(data, dict):
            raise UserError(f"{source}: a price table is a mapping of model names to prices")
        models = data.get("models", {k: v for k, v in data.items() if k != "source"})
        if not isinstance(models, dict):
            raise UserError(f"{source}: 'models' must be a table of model names")
        label = str(data.get("source") or source)
        entries: dict[str, Price] = {}
        for name, spec in models.items():
            where = f"{source}: model {name!r}"
            if not isinstance(spec, dict):
                raise UserError(f"{where}: expected {{input = ..., output = ...}}")
            unknown = set(spec) - set(_FIELDS) - {"source"}
            if unknown:
                raise UserError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} "
                                f"(known: {', '.join(_FIELDS)})")
            for needed in ("input", "output"):
                if needed not in spec:
                    raise UserError(f"{where}: needs '{needed}' (USD per 1M tokens)")
            values = {k: _number(spec[k], f"{where}, {k}") for k in _FIELDS if k in spec}
            entries[str(name)] = Price(**values, source=str(spec.get("source") or label))
        return cls(entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "PriceTable":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read the price file {p}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
            raise UserError(f"{p}: not valid {kind}: {exc}") from None
        return cls.parse(data, str(p))

    @classmethod
    def default(cls) -> "PriceTable":
        return cls.parse(tomllib.loads(DEFAULT_PRICES_TOML), "packaged price table")

    def updated(self, other: "PriceTable") -> "PriceTable":
        return PriceTable({**self.entries, **other.entries})

    def lookup(self, *names: str) -> Price | None:
        """The price of the first name with an exact key, else the most specific glob key."""
        for name in names:
            if name in self.entries:
                return self.entries[name]
        globs = sorted((k for k in self.entries if any(c in k for c in "*?[")),
                       key=lambda k: -len(k.replace("*", "")))
        for name in names:
            for pattern in globs:
                if fnmatch.fnmatchcase(name, pattern):
                    return self.entries[pattern]
        return None


def parse_price_option(text: str) -> tuple[str | None, Price]:
    """`[KEY=]IN,OUT[,CACHED]` (USD per 1M tokens)."""
    key, sep, numbers = text.rpartition("=")
    where = f"--price {text!r}"
    parts = [p.strip() for p in numbers.split(",")]
    if len(parts) not in (2, 3) or (sep and not key.strip()):
        raise UserError(f"{where}: expected [ROLE_OR_MODEL=]IN,OUT[,CACHED_IN] in USD per 1M "
                        "tokens, e.g. --price 0.15,0.60 or --price judge=2.5,10")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"{where}: prices must be numbers (USD per 1M tokens)") from None
    if any(v < 0 for v in values):
        raise UserError(f"{where}: prices must be >= 0")
    price = Price(values[0], values[1], values[2] if len(values) == 3 else None,
                  source="--price")
    return (key.strip() or None), price


@dataclass
class PriceBook:
    """Everything that sets prices for a run: the table (packaged + file) and --price."""

    table: PriceTable
    overrides: list[tuple[str | None, Price]] = field(default_factory=list)

    @classmethod
    def build(cls, prices_file: str | None = None, price: Iterable[str] = (),
              env: Mapping[str, str] | None = None) -> "PriceBook":
        env = os.environ if env is None else env
        table = PriceTable.default()
        path = prices_file or env.get(PRICES_ENV)
        if path:
            table = table.updated(PriceTable.load(path))
        return cls(table, [parse_price_option(p) for p in price])

    def price(self, role: str, spec: str) -> Price | None:
        """The price of `spec` in `role`; None when unknown. Local models are free."""
        names = price_names(spec)
        kind = find_kind(spec)
        local = kind is not None and kind.local
        for key, price in reversed(self.overrides):  # the last --price given wins
            if key is None and not local:
                return price
            if key is not None and (key == role or key in names or any(
                    fnmatch.fnmatchcase(n, key) for n in names)):
                return price  # named: even a local model (e.g. to try a budget)
        return LOCAL if local else self.table.lookup(*names)

    def check(self, roles: Mapping[str, str]) -> None:
        """A --price naming no role or model of the run is a typo: say so."""
        for key, _ in self.overrides:
            if key is None or key in roles:
                continue
            if not any(key in price_names(s) or any(fnmatch.fnmatchcase(n, key)
                                                    for n in price_names(s))
                       for s in roles.values()):
                raise UserError(f"--price {key}=...: no role or model of this run is called "
                                f"{key!r} (roles: {', '.join(roles)})")
