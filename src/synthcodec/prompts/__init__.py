"""Prompt templates shipped as package data; every one can be replaced with `--template FILE`.

A template is plain text with `string.Template` placeholders (`$name`, `$$` for a dollar
sign). Optional `[system]` and `[user]` lines split it into the two chat messages; `#`
lines before the first section are comments. Values are substituted in a single pass, so
text inside a value (an untrusted response containing `$dimension`, say) is never expanded.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from synthcodec.errors import UserError

__all__ = ["ChatTemplate", "load_template"]

_SECTIONS = {"[system]": "system", "[user]": "user"}


@dataclass(frozen=True)
class ChatTemplate:
    """A parsed template: an optional system message and a user message."""

    system: str | None
    user: str
    source: str  # "builtin:rate.txt" or the user's file path, for error messages
    text: str  # the whole file, so a run's config changes when the wording does

    @classmethod
    def parse(cls, text: str, source: str) -> "ChatTemplate":
        parts: dict[str, list[str]] = {}
        current: str | None = None
        preamble: list[str] = []
        for line in text.splitlines():
            section = _SECTIONS.get(line.strip().lower())
            if section is not None:
                if section in parts:
                    raise UserError(f"{source}: the [{section}] section appears twice")
                current = section
                parts[section] = []
            elif current is None:
                preamble.append(line)
            else:
                parts[current].append(line)
        if not parts:  # no sections: the whole file (minus leading comments) is the user message
            body = _drop_comments(preamble)
            return cls(None, _join(body), source, text)
        if any(line.strip() and not line.lstrip().startswith("#") for line in preamble):
            raise UserError(f"{source}: text before the first [system]/[user] line "
                            "(only '#' comment lines may come first)")
        if "user" not in parts:
            raise UserError(f"{source}: no [user] section")
        system = _join(parts["system"]) if "system" in parts else None
        return cls(system or None, _join(parts["user"]), source, text)

    def _templates(self) -> list[string.Template]:
        return [string.Template(t) for t in (self.system, self.user) if t is not None]

    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for tmpl in self._templates():
            if not tmpl.is_valid():
                raise UserError(f"{self.source}: a '$' that is not a placeholder "
                                "(write $$ for a literal dollar sign)")
            names.update(tmpl.get_identifiers())
        return names

    def check(self, allowed: Collection[str], need_one_of: Collection[Collection[str]] = ()) -> None:
        """UserError unless every placeholder is known and each group in `need_one_of` is used."""
        used = self.placeholders()
        unknown = sorted(used - set(allowed))
        if unknown:
            raise UserError(f"{self.source}: unknown placeholder(s) {', '.join('$' + u for u in unknown)}"
                            f"; available: {', '.join('$' + a for a in sorted(allowed))}")
        for group in need_one_of:
            if not used & set(group):
                raise UserError(f"{self.source}: the template must use "
                                + " or ".join("$" + g for g in group))

    def render(self, values: Mapping[str, str]) -> tuple[dict[str, str], ...]:
        """Chat messages with every placeholder replaced (one pass: values are not re-scanned)."""
        messages: list[dict[str, str]] = []
        if self.system is not None:
            messages.append({"role": "system", "content": string.Template(self.system).substitute(values)})
        messages.append({"role": "user", "content": string.Template(self.user).substitute(values)})
        return tuple(messages)


def _drop_comments(lines: list[str]) -> list[str]:
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        i += 1
    return lines[i:]


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")


def load_template(name: str, path: str | Path | None = None) -> ChatTemplate:
    """The user's template file when given, else the packaged one called `name`."""
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read template {p}: {exc}") from None
        return ChatTemplate.parse(text, str(p))
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return ChatTemplate.parse(text, f"builtin:{name}")
