"""Live progress: one redrawn line on a terminal, plain periodic lines otherwise.

`LiveLine` is the terminal handling both printers share: `Progress` (records through a
stage) and `StepPrinter` (the `StepProgress` of each optimizer step of `synthcodec train`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from synthcodec.llm.client import Stats


class LiveLine:
    """One status line on a stream: redrawn in place on a terminal, appended otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drew = False  # a redrawn line is on the terminal's last line

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.drew = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """A message on its own line, which the next redraw does not overwrite."""
        if self.tty and self.drew:
            self.stream.write("\r\x1b[2K")
            self.drew = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def end(self) -> None:
        """Move off a redrawn line, so what follows starts on a line of its own."""
        if self.tty and self.drew:
            self.stream.write("\n")
            self.drew = False
        self.stream.flush()


def bar(done: int, total: int) -> str:
    """` [#####...............]`: 20 cells."""
    filled = int(20 * done / max(1, total))
    return " [" + "#" * filled + "." * (20 - filled) + "]"


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
    _usd0: float | None = None  # the spend's dollars when this progress began (one stage)

    def __post_init__(self) -> None:
        if self.spend is not None:
            self._usd0 = self.spend.usd
        self._out = LiveLine(self.stream)

    @property
    def tty(self) -> bool:
        return self._out.tty

    def line(self) -> str:
        c, s = self.counts, self.stats
        elapsed = max(1e-9, time.monotonic() - self.started)
        rate = c.done / elapsed
        if c.total is not None:
            remaining = max(0, c.total - c.resumed - c.done)
            pos = f"{c.done + c.resumed}/{c.total}"
            eta = clock(remaining / rate) if rate > 0 else "?"
            pct = f" {100 * (c.done + c.resumed) / max(1, c.total):3.0f}%"
        else:
            pos, eta, pct = str(c.done), "?", ""
        drawn = bar(c.done + c.resumed, c.total) if self.tty and c.total else ""
        parts = [
            f"{self.label}{drawn}{pct} {pos}",
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
        if s.batch_status:
            parts.append(s.batch_status)
        return " | ".join(parts)

    def _money(self) -> str:
        """`$0.0123 ~$1.20 at end`: spent over the run, and where this stage is heading."""
        spend = self.spend
        if spend is None or not spend.models or spend.free:  # local models: no $ noise
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
        self._out.show(self.line())

    def note(self, message: str) -> None:
        """A message that must not be overwritten by the bar."""
        if not self.enabled:
            return
        self._out.note(message)
        self._last = 0.0

    def close(self) -> None:
        if not self.enabled:
            return
        self._out.show(self.line())
        self._out.end()


@dataclass
class StepProgress:
    """Reported by training (train/sft.py) after every optimizer step."""

    step: int
    total: int
    loss: float
    epoch: float
    lr: float
    elapsed: float

    @property
    def eta(self) -> float:
        return self.elapsed / self.step * (self.total - self.step) if self.step else math.inf


class StepPrinter:
    """One line per optimizer step of `synthcodec train`: redrawn in place on a terminal,
    appended otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = LiveLine(stream or sys.stderr)
        self.stream = self._out.stream
        self.tty = self._out.tty

    def line(self, p: StepProgress) -> str:
        drawn = bar(p.step, p.total) if self.tty else ""
        return " | ".join([
            f"train{drawn} {100 * p.step / max(1, p.total):3.0f}% {p.step}/{p.total}",
            f"loss {p.loss:.4f}",
            f"epoch {p.epoch:.2f}",
            f"lr {p.lr:.2e}",
            f"{p.elapsed / p.step:.1f}s/step",
            f"ETA {clock(p.eta)}",
        ])

    def __call__(self, p: StepProgress) -> None:
        self._out.show(self.line(p))

    def note(self, message: str) -> None:
        self._out.note(message)

    def close(self) -> None:
        self._out.end()


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


def clock(seconds: float) -> str:
    """`1:02:03` or `2:03`; `?` for an unknown (infinite) time."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _human(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
