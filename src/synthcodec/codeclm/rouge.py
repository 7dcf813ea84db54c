"""ROUGE-L near-duplicate filter (Self-Instruct style), small and dependency-free.

Tokens are lower-cased alphanumeric runs, as rouge-score's default tokenizer makes them.
The longest common subsequence uses the bit-parallel algorithm (Hyyrö 2004) over Python
integers, and a shared-token upper bound skips nearly every pair.
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
    """Accepts a text unless its ROUGE-L with an already accepted one is above `threshold`.

    LCS <= shared tokens (as multisets), so F1 <= 2*shared/(n+m): an inverted index gives
    every accepted text's shared-token count in one numpy pass, and only texts whose bound
    clears the threshold get an exact LCS. Checking against thousands stays sub-millisecond.
    """

    threshold: float = 0.7
    removed: int = 0
    _docs: list[list[str]] = field(default_factory=list)
    _lengths: list[int] = field(default_factory=list)
    _post_docs: dict[str, list[int]] = field(default_factory=dict)
    _post_counts: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._docs)

    def check(self, text: str) -> float:
        """Highest ROUGE-L against the accepted texts (0 when none comes close)."""
        import numpy as np  # a matplotlib dependency, so always installed

        cand = tokens(text)
        if not cand or not self._docs:
            return 0.0
        ids, shared = [], []
        for tok, count in Counter(cand).items():
            docs = self._post_docs.get(tok)
            if docs:
                ids.append(np.asarray(docs, dtype=np.int64))
                shared.append(np.minimum(np.asarray(self._post_counts[tok]), count))
        if not ids:
            return 0.0
        overlap = np.bincount(np.concatenate(ids), weights=np.concatenate(shared),
                              minlength=len(self._docs))
        n = len(cand)
        bound = 2 * overlap / (n + np.asarray(self._lengths))
        hits = np.nonzero(bound > self.threshold)[0]
        best = 0.0
        for i in hits[np.argsort(-bound[hits], kind="stable")]:
            if bound[i] <= best:
                break  # sorted by bound: nothing later can beat best
            doc = self._docs[int(i)]
            best = max(best, 2 * lcs_length(cand, doc) / (n + len(doc)))
        return best

    def add(self, text: str) -> bool:
        """Accept `text` (True) or count it as a near-duplicate (False)."""
        if self.check(text) > self.threshold:
            self.removed += 1
            return False
        toks = tokens(text)
        doc = len(self._docs)
        self._docs.append(toks)
        self._lengths.append(len(toks))
        for tok, count in Counter(toks).items():
            self._post_docs.setdefault(tok, []).append(doc)
            self._post_counts.setdefault(tok, []).append(count)
        return True
