from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.viewer.sample_runs import make_compare, make_generate, make_rate


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    make_generate(root)
    make_compare(root)
    make_rate(root)
    return root


@pytest.fixture
def gen_run(sample_root: Path, tmp_path: Path) -> Path:
    """A private copy of the finished generate run (tests write review.jsonl into it)."""
    return Path(shutil.copytree(sample_root / "gen", tmp_path / "gen"))


@pytest.fixture
def cmp_run(sample_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sample_root / "cmp", tmp_path / "cmp"))


@pytest.fixture
def rate_run(sample_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sample_root / "rate", tmp_path / "rate"))
