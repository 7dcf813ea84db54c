"""What to do about failed records that a re-run would only repeat: one advice per kind.

A record's failure is journaled as its reason (a sentence) and whether the same request
would fail the same way again (`repeats`: the reply comes back from the cache or greedy
decoding, or the server refuses the request as sent). The summary groups the repeating
ones by the advice below, the first kind whose pattern the reason matches; the order
matters (a 400 naming max_tokens is a refusal, not a cut-off reply).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

_REFUSED = r"HTTP 4\d\d|answered an error \(HTTP 200\)"

KINDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"({_REFUSED}).*(response_format|json_schema|json_object)", re.I | re.S),
     "the server does not take response_format: drop --json / --json-schema, or use a "
     "server with structured output"),
    (re.compile(rf"({_REFUSED}).*(content[ _-]?(policy|filter|management)|safety|moderation"
                r"|flagged|responsible ?ai)", re.I | re.S),
     "refused by the provider's content filter: rephrase or leave out those rows (a re-run "
     "is refused again)"),
    (re.compile(_REFUSED),
     "refused by the server as sent: fix what its message in failed.jsonl names (e.g. a "
     "prompt over the context length, an unknown parameter); a re-run sends the same request"),
    (re.compile(r"reasoning|thinking|<think>|</think>", re.I),
     "the model spent its tokens thinking and gave no complete answer: raise --max-tokens"),
    (re.compile(r"truncated|finish_reason=length|max.tokens", re.I),
     "cut off at the token limit: raise --max-tokens"),
    (re.compile(r"empty answer", re.I),
     "the model answered nothing: another model or prompt (the same request at temperature "
     "0 answers nothing again)"),
    (re.compile(r"no readable output|no valid structured output|not valid|does not match",
                re.I),
     "the replies could not be read: a stronger model, or --json where the command has it"),
)
OTHER = "change the options rather than re-running"


def advice(reason: str) -> str:
    """What to do about a failure with this reason that a re-run would repeat."""
    return next((text for pattern, text in KINDS if pattern.search(reason)), OTHER)


def repeat_advice(reasons: Iterable[str]) -> dict[str, int]:
    """Failed records by advice, in the order of KINDS (then OTHER)."""
    counts = Counter(advice(reason) for reason in reasons)
    order = [text for _, text in KINDS] + [OTHER]
    return {text: counts[text] for text in order if counts[text]}


def advice_lines(repeating: dict[str, int]) -> list[str]:
    """The summary's lines about failures a re-run repeats."""
    total = sum(repeating.values())
    if not total:
        return []
    lines = [f"{total} of them failed in a way a re-run repeats (the same reply comes back "
             "from the cache or greedy decoding, or the server refuses the same request):"]
    return lines + [f"  {n}: {text}" for text, n in repeating.items()]
