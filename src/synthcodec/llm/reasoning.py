"""Split a model's reply into its reasoning trace and its answer: the one place that does it.

Reasoning models (Qwen3, DeepSeek-R1, QwQ, gpt-oss, ...) served without a reasoning parser
put their trace in the reply text, in one of these forms:

- ``<think>trace</think>answer`` (also ``<thinking>`` / ``<reasoning>``);
- ``trace</think>answer``: only the closing tag (R1's chat template opens it in the prompt);
- ``<think>trace`` with no closing tag: the token limit cut the trace, there is no answer;
- gpt-oss's harmony channels: ``<|channel|>analysis<|message|>trace<|end|>...
  <|channel|>final<|message|>answer``.

A server with a reasoning parser sends the trace beside the answer (``reasoning_content``,
vLLM / SGLang / DeepSeek, or ``reasoning``, Ollama / OpenRouter); the HTTP backend folds it
back into the text as ``<think>trace</think>answer`` so that the request cache keeps the
whole reply and this module stays the only one that knows the forms.

Every reply reaches the stages through `LLMClient.complete`, which calls `split_reply`:
parsers, kept fields and judged texts see the answer only; the trace rides along in
`Completion.reasoning`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAGS = ("think", "thinking", "reasoning")
_OPEN = re.compile(r"\A\s*<(" + "|".join(_TAGS) + r")>", re.IGNORECASE)
_CLOSE = re.compile(r"</(" + "|".join(_TAGS) + r")>", re.IGNORECASE)
_HARMONY_FINAL = re.compile(r"<\|channel\|>\s*final\s*<\|message\|>")
_HARMONY_TOKENS = re.compile(r"<\|(?:start|end|return|channel|message|constrain|call)\|>"
                             r"(?:assistant|analysis|commentary|final)?")

# Folded form of a trace sent beside the answer (see OpenAIHTTPBackend.read_reply).
FOLD_OPEN, FOLD_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Split:
    """A reply taken apart: `reasoning` ("" if none), `answer`, and whether the trace was
    never closed (`cut`: the token limit ended the reply inside the reasoning)."""

    reasoning: str
    answer: str
    cut: bool = False


def fold(reasoning: object, content: str) -> str:
    """A trace sent beside the answer, folded into the text in the form `split` reads."""
    if not isinstance(reasoning, str) or not reasoning.strip():
        return content
    return f"{FOLD_OPEN}{reasoning}{FOLD_CLOSE}{content}"


def split(text: str) -> Split:
    """Take `text` apart into reasoning and answer; text without a trace is all answer."""
    if "<" not in text:  # every form has a tag: the common reply skips the regexes
        return Split("", text)
    if "<|channel|>" in text:
        return _split_harmony(text)
    opened = _OPEN.match(text)
    start = opened.end() if opened else 0
    closed = _CLOSE.search(text, start)
    if closed is None:
        if opened:  # "<think>..." never closed: the limit cut the trace
            return Split(text[start:].strip(), "", cut=True)
        return Split("", text)
    if not opened and _quoted(text, closed):
        return Split("", text)  # an answer that quotes the tag, e.g. about HTML
    return Split(text[start:closed.start()].strip(), text[closed.end():].lstrip())


def _quoted(text: str, tag: re.Match[str]) -> bool:
    """A closing tag inside quotes or backticks is text, not the end of a trace."""
    before, after = text[: tag.start()].rstrip(), text[tag.end():].lstrip()
    return before.endswith(("`", "'", '"')) or after.startswith(("`", "'", '"'))


def _split_harmony(text: str) -> Split:
    final = None
    for final in _HARMONY_FINAL.finditer(text):
        pass
    if final is None:  # only analysis/commentary: cut before the final channel
        return Split(_HARMONY_TOKENS.sub(" ", text).strip(), "", cut=True)
    reasoning = _HARMONY_TOKENS.sub(" ", text[: final.start()]).strip()
    answer = _HARMONY_TOKENS.sub("", text[final.end():]).strip()
    return Split(reasoning, answer)
