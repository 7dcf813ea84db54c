"""One source for settings: a settings dataclass declares each knob once, with its option.

A field made with `setting(default, "--flag", type=..., help=...)` is, from that one line,
the command-line option (`click_options`), the recipe key (`recipe_keys`: the flag's long
name, `-` or `_`) and the API keyword (the field's name). `from_kwargs` pops a command's
parsed options back into field values, so a command never lists its settings twice.

    @dataclass(frozen=True)
    class RunOptions:
        rpm: float | None = setting(None, "--rpm", type=click.FloatRange(min=0, min_open=True),
                                    help="Limit requests per minute.")

A boolean pair is one flag, "--json/--text"; `invert=True` makes an on-flag set the field
to False (--quiet is progress=False).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

import click

from synthcodec.errors import UserError


@dataclass(frozen=True)
class Option:
    """How one setting is spelled on the command line (and so in a recipe)."""

    flags: tuple[str, ...]  # "--rpm", or "--json/--text", and short forms ("-j")
    type: Any = None  # a click type; None for flags
    help: str = ""
    metavar: str | None = None
    envvar: str | None = None
    multiple: bool = False
    invert: bool = False  # the flag turns the setting off (--quiet: progress=False)
    show_default: bool = True

    @property
    def long(self) -> str:
        """The long name without dashes, the second half of a pair dropped: "judge-json"."""
        flag = next(f for f in self.flags if f.startswith("--"))
        return flag.split("/")[0].removeprefix("--")

    @property
    def is_flag(self) -> bool:
        return self.type is None and not self.multiple


def setting(default: Any, *flags: str, type: Any = None, help: str = "",
            metavar: str | None = None, envvar: str | None = None, multiple: bool = False,
            invert: bool = False, show_default: bool = True) -> Any:
    """A dataclass field carrying its command-line option."""
    option = Option(flags=flags, type=type, help=help, metavar=metavar, envvar=envvar,
                    multiple=multiple, invert=invert, show_default=show_default)
    return field(default=default, metadata={"option": option})


def options_of(cls: type) -> Iterator[tuple[Field[Any], Option]]:
    """The fields of `cls` that are settings, in declaration order."""
    for f in fields(cls):
        option = f.metadata.get("option")
        if option is not None:
            yield f, option


def click_options(cls: type, *names: str, defaults: Mapping[str, Any] | None = None
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command with the options of `cls`'s settings (all, or the named ones, in
    that order); `defaults` overrides a field's default for this command."""
    chosen = {f.name: (f, o) for f, o in options_of(cls)}
    order = list(names) if names else list(chosen)
    unknown = [n for n in order if n not in chosen]
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting {', '.join(unknown)}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(order):
            f, o = chosen[name]
            default = (defaults or {}).get(name, _default(f))
            if o.invert:
                default = not default
            kw: dict[str, Any] = {"help": o.help, "envvar": o.envvar, "metavar": o.metavar}
            if o.is_flag and "/" not in o.flags[0]:
                kw["is_flag"] = True
            elif o.multiple:
                kw["multiple"] = True
            else:
                kw["type"] = o.type
            show = (o.show_default and default is not None
                    and not (kw.get("is_flag") and default is False))
            fn = click.option(*o.flags, name, default=default, show_default=show, **kw)(fn)
        return fn
    return decorate


def from_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop `cls`'s settings out of a command's parsed kwargs, as field values (a None
    option keeps the field's default)."""
    values: dict[str, Any] = {}
    for f, o in options_of(cls):
        if f.name not in kwargs:
            continue
        value = kwargs.pop(f.name)
        if value is None:
            continue
        if o.invert:
            value = not value
        if o.multiple:
            value = tuple(value)
        values[f.name] = value
    return values


def recipe_keys(cls: type) -> dict[str, tuple[str, Option]]:
    """Recipe key (the long flag, `_` for `-`) -> (field name, option), for every setting."""
    return {o.long.replace("-", "_"): (f.name, o) for f, o in options_of(cls)}


def convert(option: Option | None, kind: Any, value: Any, where: str, key: str) -> Any:
    """A recipe value checked as the option would check it (ranges included); `kind`
    (bool/list/dict/str or a click type) when there is no option. UserError names the key."""
    if option is not None:
        kind = bool if option.is_flag else list if option.multiple else (
            str if option.type is None or isinstance(option.type, (click.Path,
                                                                 click.types.StringParamType))
            else option.type)
    if kind is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: {key} is a flag: write true or false")
        return (not value) if option is not None and option.invert else value
    if kind is list:  # a repeatable option: one value or a list
        values = value if isinstance(value, list) else [value]
        return tuple(str(v) for v in values)
    if kind is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: {key} must be a table, e.g. {key} = {{instruction = "
                            '"text"}')
        return {str(k): str(v) for k, v in value.items()}
    if kind is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: {key} must be a string")
        return value
    if isinstance(value, bool):  # TOML true is not a number
        raise UserError(f"{where}: {key} must be a number")
    try:
        return kind.convert(value, None, None) if hasattr(kind, "convert") else kind(value)
    except (click.BadParameter, ValueError, TypeError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        raise UserError(f"{where}: {key}: {message}") from None


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None
