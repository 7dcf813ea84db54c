"""Diversity passes over ranked rows: near-duplicates (MinHash) and k-center greedy.

Both take rows already ranked by a signal (best first) and keep the ranking's preference:
`drop_near_duplicates` keeps a row unless it nearly repeats a better-ranked kept row, and
`k_center` starts from the best row and then adds the row farthest from everything chosen,
so "top by IFD, diverse" is a ranking first and a spread second.

Near-duplicates: word 3-gram shingles of the text, MinHash signatures and LSH buckets from
`datasketch` (a row pair whose estimated Jaccard similarity is at least the threshold).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from synthcodec.errors import UserError

NUM_PERM = 128
SHINGLE = 3
DEFAULT_THRESHOLD = 0.7
_WORD = re.compile(r"\w+")


def _datasketch() -> Any:
    try:
        import datasketch
    except ImportError as exc:  # pragma: no cover - a dependency, so only a broken install
        raise UserError("near-duplicate detection needs datasketch: pip install datasketch"
                        ) from exc
    return datasketch


def shingles(text: str, size: int = SHINGLE) -> set[bytes]:
    """The text's word `size`-grams, lowercased (the whole text when it is shorter)."""
    words = _WORD.findall(text.lower())
    if len(words) <= size:
        return {" ".join(words).encode()}
    return {" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)}


def minhash(text: str, num_perm: int = NUM_PERM) -> Any:
    """The text's MinHash signature (fixed seed: the same text always gives the same one)."""
    ds = _datasketch()
    signature = ds.MinHash(num_perm=num_perm, seed=1)
    signature.update_batch(list(shingles(text)))
    return ds.LeanMinHash(signature)


def drop_near_duplicates(ranked: Iterable[tuple[int, str]], *, keep: int | None = None,
                         threshold: float = DEFAULT_THRESHOLD,
                         num_perm: int = NUM_PERM) -> tuple[list[int], dict[int, int]]:
    """Walk (row, text) best first; keep a row unless it is a near-duplicate of a row kept
    before it; stop after `keep` rows. Returns (kept rows in rank order, {dropped row: the
    kept row it repeats})."""
    ds = _datasketch()
    index = ds.MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: list[int] = []
    dropped: dict[int, int] = {}
    for row, text in ranked:
        if keep is not None and len(kept) >= keep:
            break
        signature = minhash(text, num_perm)
        twins = index.query(signature)
        if twins:
            dropped[row] = min(twins)  # the best-ranked is the first kept; ids are rows
            continue
        index.insert(row, signature)
        kept.append(row)
    return kept, dropped


def near_duplicate_groups(texts: Sequence[str], *, threshold: float = DEFAULT_THRESHOLD,
                          num_perm: int = NUM_PERM) -> list[int]:
    """For each text, the first earlier text it nearly repeats (itself when none): rows
    with the same number form one group of near-duplicates."""
    _, dropped = drop_near_duplicates(enumerate(texts), threshold=threshold, num_perm=num_perm)
    return [dropped.get(i, i) for i in range(len(texts))]


def k_center(vectors: Sequence[Sequence[float]], k: int) -> list[int]:
    """Greedy k-center over vectors given best first: start from the first, then add the one
    farthest (cosine distance) from its nearest chosen vector; ties go to the better-ranked.
    Returns positions in the order chosen."""
    n = len(vectors)
    if n == 0 or k <= 0:
        return []
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms == 0, 1.0, norms)
    chosen = [0]
    nearest = 1.0 - matrix @ matrix[0]
    nearest[0] = -np.inf
    while len(chosen) < min(k, n):
        pick = int(np.argmax(nearest))  # argmax returns the first of equal maxima
        chosen.append(pick)
        nearest = np.minimum(nearest, 1.0 - matrix @ matrix[pick])
        nearest[chosen] = -np.inf
    return chosen
