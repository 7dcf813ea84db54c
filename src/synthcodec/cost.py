"""Money: a price table per model, dollars per run, and a budget that stops sending in time.

Prices are USD per 1M tokens, looked up by the model name of a spec (`openai:NAME`,
`NAME@URL`; a key may also be the whole `NAME@URL`): an exact key first, then glob keys
(`gpt-4o-mini-*`), the longest first. Local models (`local`, `gguf:`, `hf:`, `fake:`)
cost $0. A model with no price is counted in tokens only, never priced by a guess.

Sources, later ones winning: the packaged table below, `$SYNTHCODEC_PRICES` or `--prices
FILE` (TOML or JSON, the same shape as the packaged table), and `--price [KEY=]IN,OUT[,CACHED]`
(KEY: a role of the run, e.g. `judge`, `strong`, `target`, or a model name / glob; without
KEY it prices every model of the run that is not local).

The budget (`--budget USD`, `--max-tokens-total N`) covers the whole run: what earlier
invocations recorded in the run's usage plus this one. Before each request is sent, its
worst case (prompt characters / 4 + max_tokens, at the model's price) is reserved; a request
whose reservation would cross the cap is not sent (`BudgetReached`), the run drains like a
first Ctrl-C and the command exits with code 4. After the reply the reservation is replaced
by the real usage.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthcodec.errors import UserError
from synthcodec.llm.base import Completion, Request

EXIT_BUDGET = 4
PRICES_ENV = "SYNTHCODEC_PRICES"
LOCAL_PREFIXES = ("gguf:", "hf:", "fake:")

# Keep it small: well-known hosted models only. Edit your own copy with --prices FILE.
DEFAULT_PRICES_TOML = """\
# USD per 1M tokens. input, output; cached_input where the provider discounts cached
# prompt tokens; batch_input / batch_output for the provider's batch API (not used yet).
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


def is_local(spec: str) -> bool:
    spec = spec.strip()
    return spec == "local" or spec.startswith(LOCAL_PREFIXES)


def model_names(spec: str) -> tuple[str, ...]:
    """Keys a spec is priced by: its model name, and for `NAME@URL` the whole spec too."""
    from synthcodec.llm.spec import redact_spec

    spec = spec.strip()
    if spec.startswith("openai:"):
        name = spec.removeprefix("openai:").strip()
        return (name, f"openai:{name}")
    if "@" in spec:
        shown = redact_spec(spec)
        name = spec.split("@", 1)[0].strip()
        return (shown, shown.split("#", 1)[0], name)
    return (spec,)


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
        names = model_names(spec)
        local = is_local(spec)
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
            if not any(key in model_names(s) or any(fnmatch.fnmatchcase(n, key)
                                                    for n in model_names(s))
                       for s in roles.values()):
                raise UserError(f"--price {key}=...: no role or model of this run is called "
                                f"{key!r} (roles: {', '.join(roles)})")


# --------------------------------------------------------------------------- spending

class BudgetReached(Exception):
    """Raised instead of sending a request that could cross the budget.

    The engine leaves the record unfinished (to do on the next run) and stops taking new
    records; requests already in flight finish.
    """


def estimate_prompt_tokens(request: Request) -> float:
    """A generous guess before sending: 4 characters a token, plus a little per message."""
    return sum(len(m["content"]) for m in request.messages) / 4 + 4 * len(request.messages)


@dataclass
class ModelUsage:
    name: str
    price: Price | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class _Ticket:
    usage: ModelUsage
    usd: float
    tokens: float


class Spend:
    """Dollars and tokens of one invocation, what earlier ones spent, and the caps."""

    def __init__(self, *, budget_usd: float | None = None, max_tokens: int | None = None,
                 before: Mapping[str, Any] | None = None) -> None:
        self.budget_usd = budget_usd
        self.max_tokens = max_tokens
        before = before or {}
        self.before_usd = float(before.get("usd") or 0.0)
        self.before_tokens = int(before.get("prompt_tokens") or 0) + int(
            before.get("completion_tokens") or 0)
        self.models: dict[str, ModelUsage] = {}
        self.usd = 0.0  # this invocation, settled
        self.tokens = 0
        self.reserved_usd = 0.0  # in flight
        self.reserved_tokens = 0.0
        self.peak_reserved_usd = 0.0
        self.stopped: str | None = None
        self.on_stop: list[Callable[[], None]] = []

    # ------------------------------------------------------------- set up

    def add_model(self, name: str, price: Price | None) -> ModelUsage:
        usage = self.models.get(name)
        if usage is None:
            usage = self.models[name] = ModelUsage(name, price)
        return usage

    def meter(self, name: str, price: Price | None, stats: Any = None) -> "Meter":
        return Meter(self, self.add_model(name, price), stats)

    @property
    def unpriced(self) -> list[str]:
        return [u.name for u in self.models.values() if u.price is None]

    @property
    def priced(self) -> bool:
        """Every model of the run has a price: dollars may be shown."""
        return bool(self.models) and not self.unpriced

    @property
    def total_usd(self) -> float:
        return self.before_usd + self.usd

    @property
    def total_tokens(self) -> int:
        return self.before_tokens + self.tokens

    # ------------------------------------------------------------- per request

    def reserve(self, usage: ModelUsage, request: Request) -> _Ticket:
        tokens = estimate_prompt_tokens(request) + request.max_tokens
        usd = usage.price.cost(tokens - request.max_tokens, request.max_tokens) \
            if usage.price is not None else 0.0
        over = None
        if self.budget_usd is not None and (
                self.total_usd + self.reserved_usd + usd > self.budget_usd):
            over = (f"budget reached: the next request could cost up to ${usd:.4f}, and "
                    f"${self.total_usd + self.reserved_usd:.4f} of --budget "
                    f"${self.budget_usd:g} is spent or in flight")
        elif self.max_tokens is not None and (
                self.total_tokens + self.reserved_tokens + tokens > self.max_tokens):
            over = (f"token cap reached: the next request could use up to {tokens:.0f} tokens, "
                    f"and {self.total_tokens + self.reserved_tokens:.0f} of --max-tokens-total "
                    f"{self.max_tokens} are used or in flight")
        if over is not None:
            if self.stopped is None:
                self.stopped = over
                for stop in self.on_stop:
                    stop()
            raise BudgetReached(over)
        self.reserved_usd += usd
        self.reserved_tokens += tokens
        self.peak_reserved_usd = max(self.peak_reserved_usd, self.reserved_usd)
        return _Ticket(usage, usd, tokens)

    def settle(self, ticket: _Ticket, completion: Completion | None, stats: Any = None) -> None:
        """Replace the reservation by what the reply used (a failed attempt: nothing)."""
        self.reserved_usd = max(0.0, self.reserved_usd - ticket.usd)
        self.reserved_tokens = max(0.0, self.reserved_tokens - ticket.tokens)
        if completion is None:
            return
        usage = ticket.usage
        cached = int(completion.extra.get("cached_tokens") or 0)
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        usage.cached_tokens += cached
        self.tokens += completion.prompt_tokens + completion.completion_tokens
        if usage.price is not None:
            usd = usage.price.cost(completion.prompt_tokens, completion.completion_tokens, cached)
            usage.usd += usd
            self.usd += usd
            if stats is not None:
                stats.usd += usd

    # ------------------------------------------------------------- reporting

    def projection(self, usd_now: float, done: int, remaining: int) -> float | None:
        """The whole run's dollars if the rest costs what this invocation's records did."""
        if not self.priced or done <= 0:
            return None
        return self.total_usd + usd_now / done * max(0, remaining)

    def short(self) -> str | None:
        """For the progress line: `$0.0123`, or None when a price is missing."""
        return f"${self.total_usd:.4f}" if self.priced else None

    def lines(self, *, kept: int | None = None, projected: float | None = None) -> list[str]:
        """The summary's cost lines."""
        if not self.models:
            return []
        lines = []
        if self.priced:
            if all(u.price is not None and u.price.free for u in self.models.values()):
                lines.append("cost $0 (local models)")
            else:
                parts = [f"cost ${self.usd:.4f} this invocation"]
                if self.before_usd:
                    parts.append(f"${self.total_usd:.4f} whole run so far")
                if kept:
                    parts.append(f"${self.total_usd / kept:.6f} per kept row")
                if projected is not None:
                    parts.append(f"projected whole run ~${projected:.2f}")
                per_model = [f"{u.name} ${u.usd:.4f}" for u in self.models.values()
                             if len(self.models) > 1]
                if per_model:
                    parts.append(", ".join(per_model))
                lines.append(" | ".join(parts))
        else:
            for name in self.unpriced:
                u = self.models[name]
                lines.append(f"price unknown for {name} (tokens in {u.prompt_tokens} out "
                             f"{u.completion_tokens}): add it with --price or --prices FILE")
        if self.budget_usd is not None:
            lines.append(f"budget ${self.budget_usd:g}: ${self.total_usd:.4f} spent over every "
                         "invocation of this run")
        if self.max_tokens is not None:
            lines.append(f"token cap {self.max_tokens}: {self.total_tokens} used over every "
                         "invocation of this run")
        if self.stopped:
            what = "--budget" if self.stopped.startswith("budget") else "--max-tokens-total"
            lines.append(f"stopped before the {what} cap: sent nothing more once the next "
                         "request could cross it, and let the requests in flight finish. "
                         f"Nothing is lost: run the same command with a larger {what} to do the "
                         f"rest (exit code {EXIT_BUDGET})")
        return lines

    def usage_fields(self) -> dict[str, Any]:
        """For manifest.json: dollars only when every model has a price."""
        out: dict[str, Any] = {"models": {
            u.name: {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                     "cached_tokens": u.cached_tokens,
                     "usd": round(u.usd, 6) if u.price is not None else None,
                     "price_per_1m": None if u.price is None else {
                         "input": u.price.input, "output": u.price.output,
                         "cached_input": u.price.cached_input, "source": u.price.source}}
            for u in self.models.values()}}
        if self.unpriced:
            out["price_unknown"] = self.unpriced
        if self.budget_usd is not None:
            out["budget_usd"] = self.budget_usd
        if self.max_tokens is not None:
            out["max_tokens_total"] = self.max_tokens
        if self.stopped:
            out["stopped"] = self.stopped
        return out


@dataclass
class Meter:
    """One client's hook into a run's Spend (see LLMClient.meter)."""

    spend: Spend
    usage: ModelUsage
    stats: Any = None

    def reserve(self, request: Request) -> _Ticket:
        return self.spend.reserve(self.usage, request)

    def settle(self, ticket: _Ticket, completion: Completion | None) -> None:
        self.spend.settle(ticket, completion, self.stats)
