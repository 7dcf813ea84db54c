"""Instruction + input -> the prompt text a model sees: one helper for training, export,
benchmark questions and judged questions, so a tuned model is asked exactly what it learned.
"""

from __future__ import annotations

__all__ = ["join_instruction"]


def join_instruction(instruction: str, input_text: str | None = "") -> str:
    """The instruction, then a blank line and the input when there is one (Alpaca's layout).

    An input that is empty or only whitespace adds nothing; the texts are otherwise kept as
    written (no stripping), as training has always rendered them.
    """
    if input_text and input_text.strip():
        return f"{instruction}\n\n{input_text}"
    return instruction
