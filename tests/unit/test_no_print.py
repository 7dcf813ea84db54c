"""Issue 19: nothing in the library prints. Output to the terminal is the CLI's (cli.py,
commands/) and the live progress line's (progress.py); everything else reports through its
results or the "synthcodec" logger. This scans the source, so a new `print(...)` or
`click.echo`/`click.secho` anywhere else fails here, named by file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import synthcodec

PACKAGE = Path(synthcodec.__file__).resolve().parent
ALLOWED = ("cli.py", "progress.py", "commands/")


def printing_calls(source: str) -> list[tuple[int, str]]:
    """(line, what) of each print call and each use of click.echo / click.secho (called or
    passed along as a callback) in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "print"):
            found.append((node.lineno, "print(...)"))
        elif (isinstance(node, ast.Attribute) and node.attr in ("echo", "secho")
              and isinstance(node.value, ast.Name) and node.value.id == "click"):
            found.append((node.lineno, f"click.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "click":
            found += [(node.lineno, f"from click import {a.name}") for a in node.names
                      if a.name in ("echo", "secho")]
    return sorted(found)


def library_files() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if not path.relative_to(PACKAGE).as_posix().startswith(ALLOWED)]


def test_the_scan_finds_each_way_of_printing() -> None:
    source = ("import click\nfrom click import echo\nprint('x')\nclick.echo('x', err=True)\n"
              "say = click.secho\nlog.info('print(x)')\n")
    assert printing_calls(source) == [(2, "from click import echo"), (3, "print(...)"),
                                      (4, "click.echo"), (5, "click.secho")]


def test_the_library_prints_nothing() -> None:
    files = library_files()
    assert PACKAGE / "io.py" in files and PACKAGE / "cli.py" not in files
    found = [f"{path.relative_to(PACKAGE)}:{line}: {what}" for path in files
             for line, what in printing_calls(path.read_text(encoding="utf-8"))]
    assert not found, ("the library prints (log with logging.getLogger(__name__), or return "
                       "lines for the command to print):\n" + "\n".join(found))
