"""No import cycles among synthcodec's modules, counting every import a module runs: at
module level and inside functions (deferred imports hide a cycle, they do not remove it).
Not counted: imports under `if TYPE_CHECKING:` and the package's own lazy `__getattr__`
(`synthcodec.rate` and friends), which only re-export."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (SRC / "synthcodec").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if name == "synthcodec":  # its imports are the lazy re-exports of __getattr__
            graph[name] = set()
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str | None] = set()
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                deps.update(owner(a.name) for a in node.names if a.name.startswith("synthcodec"))
                continue
            base = package
            for _ in range(max(0, node.level - 1)):
                base = base.rpartition(".")[0]
            module = (base + ("." + node.module if node.module else "")) if node.level \
                else (node.module or "")
            if not module.startswith("synthcodec"):
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                deps.add(full if full in mods else owner(module))
        deps.discard(None)
        deps.discard(name)
        graph[name] = {d for d in deps if d is not None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_graph_sees_deferred_imports() -> None:
    graph = import_graph()
    assert "synthcodec.experiment.report" in graph["synthcodec.experiment.run"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_help_lists_the_commands_without_importing_them() -> None:
    """`synthcodec --help` lists the commands from cli.COMMANDS' short helps (no command
    module imported), and shows exactly what click would from the commands themselves."""
    import importlib
    import subprocess
    import sys

    import click

    from synthcodec.cli import COMMANDS, cli
    from tests.helpers import cli_env

    probe = ("import sys; from synthcodec.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('synthcodec.commands.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=cli_env(), check=True).stdout
    assert out.splitlines()[-1] == "[]" and "view " in out
    for name, (module, short) in COMMANDS.items():  # the table agrees with the docstrings
        assert importlib.import_module(module).command.get_short_help_str(10_000) == short, name
    ctx = click.Context(cli, info_name="synthcodec")
    ours, clicks = click.HelpFormatter(width=80), click.HelpFormatter(width=80)
    cli.format_commands(ctx, ours)
    click.Group.format_commands(cli, ctx, clicks)
    assert ours.getvalue() == clicks.getvalue()
