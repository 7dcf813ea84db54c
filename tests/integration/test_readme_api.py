"""The README's Python API example runs as written, on the embedded model and the real data.

It runs from a folder laid out like the repository (`../shared` beside it, `examples/`), so
the paths in the README are the ones a reader types.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def readme_python_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def test_python_api_example_runs(shared_data: Path, require_embedded: None, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    blocks = readme_python_blocks("Python API")
    assert blocks, "the README lost its Python API example"
    (tmp_path / "shared").symlink_to(shared_data.parent)
    work = tmp_path / "repo"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(work)
    for block in blocks:
        exec(compile(block, "README.md (Python API)", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "records in 6" in out
    assert all(re.search(rf"'{k}': [\d.]+", out) for k in ("win", "tie", "lose", "crr")), out
    assert re.search(r"\d+ kept, \d+ rejected", out)
    # Every call left its run directory where the README says: under ./runs
    kinds = sorted({p.name.split("-")[0] for p in (work / "runs").iterdir()})
    assert kinds == ["compare", "complete", "generate", "rate"]
