"""Live progress: one redrawn line on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from synthcodec.llm.client import Stats


@dataclass
class Counts:
    total: int | None = None
    done: int = 0  # finished this run (ok + rejected + failed)
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    resumed: int = 0  # already finished by an earlier run, skipped


@dataclass
class Progress:
    label: str
    counts: Counts
    stats: Stats
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    interval: float | None = None  # seconds between plain lines; a TTY redraws 5x a second
    enabled: bool = True
    spend: Any = None  # cost.Spend: dollars spent and projected, when every model is priced
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _drew: bool = False
    _usd0: float | None = None  # the spend's dollars when this progress began (one stage)

    def __post_init__(self) -> None:
        if self.spend is not None:
            self._usd0 = self.spend.usd

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        c, s = self.counts, self.stats
        elapsed = max(1e-9, time.monotonic() - self.started)
        rate = c.done / elapsed
        if c.total is not None:
            remaining = max(0, c.total - c.resumed - c.done)
            pos = f"{c.done + c.resumed}/{c.total}"
            eta = _clock(remaining / rate) if rate > 0 else "?"
            pct = f" {100 * (c.done + c.resumed) / max(1, c.total):3.0f}%"
        else:
            pos, eta, pct = str(c.done), "?", ""
        bar = ""
        if self.tty and c.total:
            filled = int(20 * (c.done + c.resumed) / c.total)
            bar = " [" + "#" * filled + "." * (20 - filled) + "]"
        parts = [
            f"{self.label}{bar}{pct} {pos}",
            f"{rate:.1f}/s",
            f"ETA {eta}",
            f"tok {_human(s.prompt_tokens)}>{_human(s.completion_tokens)}",
            f"cache {s.cache_hits}",
        ]
        money = self._money()
        if money:
            parts.append(money)
        if c.failed:
            parts.append(f"failed {c.failed}")
        if c.rejected:
            parts.append(f"rejected {c.rejected}")
        if s.retries:
            parts.append(f"retries {s.retries}")
        if c.resumed:
            parts.append(f"resumed {c.resumed}")
        if s.endpoints:
            parts.append(_endpoints(s))
        return " | ".join(parts)

    def _money(self) -> str:
        """`$0.0123 ~$1.20 at end`: spent over the run, and where this stage is heading."""
        spend = self.spend
        if spend is None or not spend.models:
            return ""
        if not spend.priced:
            return "price unknown"
        text = f"${spend.total_usd:.4f}"
        c = self.counts
        if c.total is not None and c.done:
            remaining = c.total - c.resumed - c.done
            projected = spend.projection(spend.usd - (self._usd0 or 0.0), c.done, remaining)
            if projected is not None and remaining > 0:
                text += f" ~${projected:.2f} at end"
        return text

    def tick(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        every = 0.2 if self.tty else (self.interval or 10.0)
        if not force and now - self._last < every:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
            self._drew = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """A message that must not be overwritten by the bar."""
        if not self.enabled:
            return
        if self.tty and self._drew:
            self.stream.write("\r\x1b[2K")
        self.stream.write(message + "\n")
        self.stream.flush()
        self._last = 0.0

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.tick(force=True)
            self.stream.write("\n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def _endpoints(stats: Stats) -> str:
    """`ep host:port 812, host:port 188 (41 failed, benched)`: requests per endpoint."""
    shown = []
    for name, counts in stats.endpoints.items():
        where = urlsplit(name.split("@", 1)[-1]).netloc.rsplit("@", 1)[-1] or name
        notes = [f"{counts.failures} failed"] if counts.failures else []
        if counts.benched_now:
            notes.append("benched")
        shown.append(f"{where} {counts.requests}" + (f" ({', '.join(notes)})" if notes else ""))
    return "ep " + ", ".join(shown)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _human(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
