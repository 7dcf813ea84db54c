"""`view` and `push` without their extras: exit 2 with one line naming the extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import cli


@pytest.mark.parametrize("args, blocked, extra", [
    (("view",), ("starlette", "jinja2", "uvicorn"), "view"),
    (("push", "--repo-id", "me/x", "--to-dir", "OUT"), ("huggingface_hub",), "hf"),
])
def test_missing_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                   blocked: tuple[str, ...], extra: str) -> None:
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "synthcodec.viewer.app", raising=False)
    argv = [args[0], str(tmp_path), *(str(tmp_path / a) if a == "OUT" else a for a in args[1:])]
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"pip install 'synthcodec[{extra}]'" in err and err.startswith("error: "), err
