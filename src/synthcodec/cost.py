"""Money: dollars per run, and a budget that stops sending in time (prices: synthcodec.prices).

The budget (`--budget USD`, `--max-tokens-total N`) covers the whole run: what earlier
invocations recorded in the run's usage plus this one. Before each request is sent, its
worst case (Request.estimated_prompt_tokens + max_tokens, at the model's price) is reserved; a request
whose reservation would cross the cap is not sent (`BudgetReached`), the run drains like a
first Ctrl-C and the command exits with code 4. After the reply the reservation is replaced
by the real usage; a reply that reports none (no `usage`, or zero tokens) keeps its
reservation, the worst case, as spent, and the summary and manifest say so
(USAGE_NOT_REPORTED), so a server without usage never makes a budget no cap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synthcodec.errors import Drain
from synthcodec.llm.base import Completion, Request
from synthcodec.prices import Price

EXIT_BUDGET = 4
USAGE_NOT_REPORTED = "usage not reported; counted the worst case"

# --------------------------------------------------------------------------- spending

class BudgetReached(Drain):
    """Raised instead of sending a request that could cross the budget.

    The engine leaves the record unfinished (to do on the next run) and stops taking new
    records; requests already in flight finish.
    """


@dataclass
class ModelUsage:
    name: str
    price: Price | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    usd: float = 0.0
    unreported: int = 0  # replies without usage, counted at their worst case

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
            before.get("completion_tokens") or 0) + int(before.get("worst_case_tokens") or 0)
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
    def unreported(self) -> int:
        """Replies of this invocation that reported no usage (counted at their worst case)."""
        return sum(u.unreported for u in self.models.values())

    @property
    def total_usd(self) -> float:
        return self.before_usd + self.usd

    @property
    def total_tokens(self) -> int:
        return self.before_tokens + self.tokens

    def stop(self, reason: str) -> None:
        """Stop the run at its cap: the first reason is kept and the `on_stop` hooks run
        once; later calls change nothing."""
        if self.stopped is not None:
            return
        self.stopped = reason
        for hook in self.on_stop:
            hook()

    # ------------------------------------------------------------- per request

    def reserve(self, usage: ModelUsage, request: Request,
                prompt_tokens: float | None = None) -> _Ticket:
        """Reserve `request`'s worst case; `prompt_tokens`: its estimate when the caller has
        it already (Request.estimated_prompt_tokens)."""
        if prompt_tokens is None:
            prompt_tokens = request.estimated_prompt_tokens()
        tokens = prompt_tokens + request.max_tokens
        usd = usage.price.cost(prompt_tokens, request.max_tokens) \
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
            self.stop(over)
            raise BudgetReached(over)
        self.reserved_usd += usd
        self.reserved_tokens += tokens
        self.peak_reserved_usd = max(self.peak_reserved_usd, self.reserved_usd)
        return _Ticket(usage, usd, tokens)

    def settle(self, ticket: _Ticket, completion: Completion | None, stats: Any = None) -> None:
        """Replace the reservation by what the reply used (a failed attempt: nothing). A reply
        with no token counts (the server sent no `usage`) is counted at the reservation, its
        worst case: the budget must hold whatever the server reports."""
        self.reserved_usd = max(0.0, self.reserved_usd - ticket.usd)
        self.reserved_tokens = max(0.0, self.reserved_tokens - ticket.tokens)
        if completion is None:
            return
        usage = ticket.usage
        if not completion.prompt_tokens and not completion.completion_tokens:
            usage.unreported += 1
            tokens, usd = round(ticket.tokens), ticket.usd
            if stats is not None:
                stats.worst_case_tokens += tokens
        else:
            cached = int(completion.extra.get("cached_tokens") or 0)
            usage.prompt_tokens += completion.prompt_tokens
            usage.completion_tokens += completion.completion_tokens
            usage.cached_tokens += cached
            tokens = completion.prompt_tokens + completion.completion_tokens
            usd = (0.0 if usage.price is None else
                   usage.price.cost(completion.prompt_tokens, completion.completion_tokens, cached))
        self.tokens += tokens
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

    @property
    def counts_money_or_tokens(self) -> bool:
        """A cap, or a price that is not $0: what a reply without usage is counted for."""
        return (self.budget_usd is not None or self.max_tokens is not None
                or (self.priced and not self.free))

    @property
    def free(self) -> bool:
        """Every model is a local one (priced at $0)."""
        return bool(self.models) and all(u.price is not None and u.price.free
                                         for u in self.models.values())

    def lines(self, *, kept: int | None = None, projected: float | None = None) -> list[str]:
        """The summary's cost lines."""
        if not self.models:
            return []
        lines = []
        if self.priced:
            if self.free:
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
        if self.unreported and self.counts_money_or_tokens:
            lines.append(f"{USAGE_NOT_REPORTED} ({self.unreported} replies without `usage`: "
                         "the prompt estimate plus --max-tokens each)")
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
                     "cached_tokens": u.cached_tokens, "usage_not_reported": u.unreported,
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
        if self.unreported and self.counts_money_or_tokens:
            out["usage_not_reported"] = f"{USAGE_NOT_REPORTED} for {self.unreported} replies"
        if self.stopped:
            out["stopped"] = self.stopped
        return out


@dataclass
class Meter:
    """One client's hook into a run's Spend (see LLMClient.meter)."""

    spend: Spend
    usage: ModelUsage
    stats: Any = None

    def reserve(self, request: Request, prompt_tokens: float | None = None) -> _Ticket:
        return self.spend.reserve(self.usage, request, prompt_tokens)

    def settle(self, ticket: _Ticket, completion: Completion | None) -> None:
        self.spend.settle(ticket, completion, self.stats)
