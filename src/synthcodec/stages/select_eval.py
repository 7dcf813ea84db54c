"""`select --evaluate LABELS`: how well each signal ranks the rows a person would keep.

LABELS holds labelled rows (your own keep/drop decisions): the same instruction, input and
response as the source's rows, plus a label column (true/false, 1/0, keep/drop, yes/no,
kept/rejected). Rows are matched by their content. For every signal the source has (score,
ifd, target_ifd, any --by column) and the two baselines (length, random), it reports the
AUC (the chance that a kept row ranks above a dropped one; 0.5 is chance) and the precision
at K, the share of kept rows among the K best by that signal (K: the selection's size).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from synthcodec.errors import InputError
from synthcodec.io import Row, iter_rows
from synthcodec.stages.score import IFD_SIGNALS

POSITIVE = {"true", "1", "keep", "kept", "yes", "good"}
NEGATIVE = {"false", "0", "drop", "dropped", "rejected", "reject", "no", "bad"}


def label_value(path: Path, line: int, value: Any, label_field: str) -> bool:
    """A label as True (keep) or False (drop); InputError naming the line otherwise."""
    text = str(value).strip().lower() if value is not None else ""
    if isinstance(value, bool):
        return value
    if text in POSITIVE:
        return True
    if text in NEGATIVE:
        return False
    raise InputError(path, f"not a label: {value!r} (use true/false, 1/0 or keep/drop)",
                     line=line, field=label_field)


def read_labels(path: Path, key_of: Callable[[Row], Hashable], label_field: str
                ) -> dict[Hashable, bool]:
    """{row key: label} of every row of `path`."""
    labels: dict[Hashable, bool] = {}
    for line, row in iter_rows(path):
        if label_field not in row:
            raise InputError(path, "missing (name the label column with --label-field)",
                             line=line, field=label_field)
        labels[key_of(row)] = label_value(path, line, row[label_field], label_field)
    return labels


def goodness(value: float, signal: str, lowest: bool = False) -> tuple[int, float]:
    """A key that sorts better rows higher: IFD-flagged rows below all others."""
    flag = 0 if signal in IFD_SIGNALS and value >= 1.0 else 1
    return flag, -value if lowest else value


def precision_at(keys: list[tuple[int, float]], labels: list[bool], k: int) -> float | None:
    """The share of positives among the k best (ties: the earlier row first)."""
    if k <= 0 or not labels:
        return None
    best = sorted(range(len(keys)), key=lambda i: (tuple(-x for x in keys[i]), i))[:k]
    return sum(labels[i] for i in best) / len(best)
