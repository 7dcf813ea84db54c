"""CodecLM prompts: pure request builders and output parsers, tested without any model.

The wording lives in `synthcodec/prompts/codeclm_*.txt` (package data). A user overrides
any of them by putting a file of the same name in a folder passed as `--prompts DIR`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from synthcodec.errors import UserError
from synthcodec.judging.fence import strip_code_fence
from synthcodec.llm.base import Request
from synthcodec.parsing import ParseError, parse_numbered_list, parse_rubrics
from synthcodec.prompts import ChatTemplate, load_template

ENCODE, DECODE, RUBRICS, IMPROVE = ("codeclm_encode.txt", "codeclm_decode.txt",
                                    "codeclm_rubrics.txt", "codeclm_improve.txt")
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    ENCODE: ("instruction",),
    DECODE: ("n", "use_case", "skills"),
    RUBRICS: ("n", "use_case", "skills"),
    IMPROVE: ("instruction", "action", "use_case", "skills"),
}
MAX_SKILLS = 3


class EncodedMetadata(BaseModel):
    """What encode asks the strong model for: one use case and at most 3 skills."""

    use_case: str = Field(min_length=1, max_length=100)
    skills: list[str] = Field(min_length=1, max_length=MAX_SKILLS)

    @field_validator("use_case", mode="before")
    @classmethod
    def _clean_use_case(cls, value: object) -> object:
        return _norm(value) if isinstance(value, str) else value

    @field_validator("skills", mode="before")
    @classmethod
    def _clean_skills(cls, value: object) -> object:
        # A fourth skill is a near miss, not a reason to re-ask: keep the first three.
        if isinstance(value, str):
            value = [s for s in re.split(r"[,;]", value)]
        if isinstance(value, list):
            seen: list[str] = []
            for skill in value:
                if isinstance(skill, str) and _norm(skill) and _norm(skill) not in seen:
                    seen.append(_norm(skill))
            return seen[:MAX_SKILLS]
        return value


def _norm(text: str) -> str:
    """Lower-case, single-spaced, without trailing punctuation: 'Python.' and 'python' match."""
    return " ".join(text.strip().strip(".;:").split()).lower()


def skills_text(skills: Sequence[str]) -> str:
    return ", ".join(skills) if skills else "(none given)"


@dataclass(frozen=True)
class Prompts:
    """The four CodecLM templates, packaged or the user's."""

    encode: ChatTemplate
    decode: ChatTemplate
    rubrics: ChatTemplate
    improve: ChatTemplate

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Prompts:
        """Packaged templates; a file with the same name in `folder` replaces one."""
        loaded: dict[str, ChatTemplate] = {}
        for name, allowed in PLACEHOLDERS.items():
            path = Path(folder) / name if folder is not None else None
            if folder is not None and not Path(folder).is_dir():
                raise UserError(f"--prompts {folder}: not a directory")
            template = load_template(name, path if path is not None and path.exists() else None)
            template.check(allowed, need_one_of=[(p,) for p in allowed if p != "n"])
            loaded[name.removeprefix("codeclm_").removesuffix(".txt")] = template
        return cls(**loaded)

    def sha256(self, *which: str) -> str:
        """Hash of the named templates' text: editing a prompt changes the stage's config."""
        digest = hashlib.sha256()
        for name in which:
            digest.update(getattr(self, name).text.encode())
        return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- builders

def encode_request(p: Prompts, instruction: str, *, temperature: float, max_tokens: int) -> Request:
    return Request(messages=p.encode.render({"instruction": instruction}),
                   temperature=temperature, max_tokens=max_tokens)


def decode_request(p: Prompts, use_case: str, skills: Sequence[str], n: int, *,
                   temperature: float, max_tokens: int, sample: int = 0) -> Request:
    values = {"n": str(n), "use_case": use_case, "skills": skills_text(skills)}
    return Request(messages=p.decode.render(values), temperature=temperature,
                   max_tokens=max_tokens, sample=sample)


def rubrics_request(p: Prompts, use_case: str, skills: Sequence[str], n: int, *,
                    temperature: float, max_tokens: int, sample: int = 0) -> Request:
    values = {"n": str(n), "use_case": use_case, "skills": skills_text(skills)}
    return Request(messages=p.rubrics.render(values), temperature=temperature,
                   max_tokens=max_tokens, sample=sample)


def improve_request(p: Prompts, instruction: str, action: str, use_case: str,
                    skills: Sequence[str], *, temperature: float, max_tokens: int,
                    sample: int = 0) -> Request:
    values = {"instruction": instruction, "action": action, "use_case": use_case,
              "skills": skills_text(skills)}
    return Request(messages=p.improve.render(values), temperature=temperature,
                   max_tokens=max_tokens, sample=sample)


def answer_request(instruction: str, *, temperature: float, max_tokens: int,
                   sample: int = 0) -> Request:
    """The instruction as the user turn, nothing added: both models see the same prompt."""
    return Request.chat(instruction, temperature=temperature, max_tokens=max_tokens, sample=sample)


# --------------------------------------------------------------------------- parsers

def parse_instructions(text: str, n: int, *, truncated: bool = False) -> list[str]:
    """At most n instructions from a numbered list; a list cut off by max_tokens loses its last item."""
    items = parse_numbered_list(text)
    if truncated and items:
        items = items[:-1]
    items = [item for item in items if _looks_like_instruction(item)]
    if not items:
        raise ParseError("no instructions found in the reply (expected a numbered list)", text)
    return items[:n]


def _looks_like_instruction(item: str) -> bool:
    # Headings such as "Instructions:" slip through list parsing; real items have some words.
    return len(item.split()) >= 3 and not item.rstrip().endswith(":")


def parse_rubric_actions(text: str, n: int) -> tuple[list[str], list[str]]:
    """(rubrics, actions), n of each at most; an action is needed for every improve round."""
    rubrics, actions = parse_rubrics(text)
    return rubrics[:n], actions[:n]


_LABEL_RE = re.compile(
    r"^\s*(?:\*\*|__)?(?:here is |here's )?(?:the )?(?:new|rewritten|improved|revised|"
    r"more challenging)?\s*(?:instruction|version|prompt)\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_QUOTE_PAIRS = {'"': '"', "“": "”", "'": "'", "`": "`"}


def parse_rewrite(text: str) -> str:
    """The rewritten instruction: labels ('New instruction:'), code fences and quotes removed."""
    body = strip_code_fence(text).strip()
    body = _LABEL_RE.sub("", body, count=1).strip()
    if len(body) >= 2 and body[0] in _QUOTE_PAIRS and body[-1] == _QUOTE_PAIRS[body[0]]:
        inner = body[1:-1]
        if body[0] not in inner:
            body = inner.strip()
    if len(body.split()) < 3:
        raise ParseError("the rewrite is empty or too short to be an instruction", text)
    return body
