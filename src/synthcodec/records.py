"""What a record is, and how our bookkeeping rides on it.

A record is a plain dict (`Record`): an input row as read, or a row a stage wrote. Each input
row gets a deterministic id from its position and its content (`record_id`); the journal is
keyed by it, so a re-run resumes exactly the records it has not finished. Our bookkeeping
never sits beside the user's columns: it rides under one reserved key, `META`, as
`{id, index}` on every output row (its lineage back to the input) and, on a rejected or failed
row, `{status, reason, ...}` too (`dropped_row`; `reason_of` reads the reason back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synthcodec.store import canonical_json

if TYPE_CHECKING:
    from synthcodec.executors import Item

Record = dict[str, Any]

# Our bookkeeping inside a row (record id, input position, status, reason). One namespaced
# key, so it never overwrites a user's column; an input that has it is refused (io.py).
META = "_synthcodec"


def record_id(idx: int, row: Mapping[str, Any]) -> str:
    """Deterministic: position in the input plus a hash of the row's content."""
    digest = hashlib.sha1(canonical_json(row).encode()).hexdigest()[:10]
    return f"{idx:07d}-{digest}"


def dropped_row(item: Item, status: str, reason: str, data: Record | None = None,
                **extra: Any) -> Record:
    """A rejected or failed row: the data untouched, our bookkeeping under one key."""
    payload = data if data is not None else item.row if item.row is not None else item.record
    return {**payload, META: {"id": item.id, "index": item.idx, "status": status,
                              "reason": reason, **extra}}


def reason_of(row: Record) -> str:
    """The reason written into a rejected or failed row by `dropped_row`."""
    return str((row.get(META) or {}).get("reason", ""))
