"""ROUGE-L near-duplicate filter (Self-Instruct style), small and dependency-free.

Tokens are lower-cased alphanumeric runs, as rouge-score's default tokenizer makes them.
The longest common subsequence uses the bit-parallel algorithm (Hyyrö 2004) over Python
integers, and two cheap upper bounds skip most pairs, so checking a candidate against a
few thousand kept instructions stays in milliseconds.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):  # bit i of masks[tok] set where b[i] == tok
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def rouge_l(a: str | list[str], b: str | list[str]) -> float:
    """ROUGE-L F1 between two texts (or token lists)."""
    ta = tokens(a) if isinstance(a, str) else a
    tb = tokens(b) if isinstance(b, str) else b
    if not ta or not tb:
        return 0.0
    lcs = lcs_length(ta, tb)
    return 2 * lcs / (len(ta) + len(tb))


@dataclass
class NearDuplicateFilter:
    """Accepts a text unless its ROUGE-L with an already accepted one is above `threshold`."""

    threshold: float = 0.7
    _kept: list[tuple[list[str], Counter[str]]] = field(default_factory=list)
    removed: int = 0

    def __len__(self) -> int:
        return len(self._kept)

    def check(self, text: str) -> float:
        """Highest ROUGE-L against the accepted texts (0 when none comes close)."""
        cand = tokens(text)
        if not cand:
            return 0.0
        bag = Counter(cand)
        best = 0.0
        n = len(cand)
        for kept, kept_bag in self._kept:
            m = len(kept)
            # F = 2*LCS/(n+m) and LCS <= min(n, m) <= shared tokens: skip pairs that cannot pass.
            if 2 * min(n, m) / (n + m) <= max(best, self.threshold):
                continue
            shared = sum((bag & kept_bag).values())
            if 2 * shared / (n + m) <= max(best, self.threshold):
                continue
            best = max(best, 2 * lcs_length(cand, kept) / (n + m))
        return best

    def add(self, text: str) -> bool:
        """Accept `text` (True) or count it as a near-duplicate (False)."""
        if self.check(text) > self.threshold:
            self.removed += 1
            return False
        toks = tokens(text)
        self._kept.append((toks, Counter(toks)))
        return True
