"""Training data: a file's rows -> validated examples (formats.example_from_row: Alpaca,
OpenAI or ShareGPT rows) -> (input_ids, labels) with only the assistant's tokens labelled,
and the collator that pads them into batches.

No torch at import time except inside the collator's call: rows are validated (file, line
and field in every error) before the `train` extra is even looked for.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from synthcodec.errors import InputError, UserError
from synthcodec.formats import Example, Message, example_from_row
from synthcodec.io import iter_rows
from synthcodec.llm.hfmodels import render, token_ids

IGNORE_INDEX = -100  # label value that cross-entropy skips: prompt tokens and padding


def load_examples(path: str | os.PathLike[str]) -> list[Example]:
    """Every row of a JSONL/JSON (or CSV/Parquet/HF dataset) file, validated before training."""
    examples = [example_from_row(path, line, row) for line, row in iter_rows(path)]
    if not examples:
        raise InputError(path, "the training data has no rows")
    return examples


def examples_sha256(examples: Sequence[Example]) -> str:
    """A hash of the conversations themselves, independent of the file format."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps(ex.messages, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# --- Tokenization and masking ----------------------------------------------------------


def encode_messages(tokenizer: Any, messages: Sequence[Message],
                    max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one conversation; labels are IGNORE_INDEX outside the
    assistant turns.

    The conversation is cut into segments at each assistant turn: the text before it up to
    and including the generation prompt (as `add_generation_prompt=True` renders it at
    inference), then the turn itself (its content and end-of-turn token). Each segment is
    tokenized on its own, so the prompt tokens are exactly those the model sees when it is
    asked to answer, and only the answer tokens carry labels.

    Own code, not trl's: trl masks prompts only for prompt/completion rows (one turn) or
    templates with `{% generation %}` markers, which SmolLM2's and most templates lack.
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True)
        full = render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not prefix.startswith(done) or not full.startswith(prefix):
            raise UserError(
                "this model's chat template rewrites earlier turns, so the answer tokens "
                "cannot be separated from the prompt; use single-turn rows")
        segments.append((prefix[len(done):], False))
        segments.append((full[len(prefix):], bool(message["content"].strip())))
        done = full
    ids: list[int] = []
    labels: list[int] = []
    for text, trainable in segments:
        if not text:
            continue
        seg = token_ids(tokenizer, text)
        ids.extend(seg)
        labels.extend(seg if trainable else [IGNORE_INDEX] * len(seg))
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


class AnswerOnlyCollator:
    """The data collator of the Trainer: features -> a right-padded batch of tensors.

    A feature is `{"input_ids", "labels"}` as `encode_messages` makes them (training
    encodes every row once up front, to count answer tokens and skip rows with none). Labels are IGNORE_INDEX on every prompt token and
    on padding, so the loss sees the assistant's tokens only; `attention_mask` is 0 on
    padding. transformers' own collators either label every token
    (`DataCollatorForLanguageModeling`) or need one fixed response marker string
    (trl's completion-only collator); this works with any chat template and any turns.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.pad_id = tokenizer.pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [(list(f["input_ids"]), list(f["labels"])) for f in features]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, labs) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            labels[r, : len(labs)] = torch.tensor(labs, dtype=torch.long)
            attention[r, : len(ids)] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


__all__ = [
    "IGNORE_INDEX",
    "AnswerOnlyCollator",
    "encode_messages",
    "examples_sha256",
    "load_examples",
]
