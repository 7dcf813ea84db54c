"""Embedded backend settings that need no model weights (the model loads lazily)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synthcodec.errors import UserError
from synthcodec.llm import load_backend
from synthcodec.llm.llamacpp import LlamaCppBackend


def test_thread_count_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setenv("SYNTHCODEC_LLAMA_THREADS", "1")
    assert LlamaCppBackend(model).n_threads == 1
    monkeypatch.setenv("SYNTHCODEC_LLAMA_THREADS", "")
    assert LlamaCppBackend(model).n_threads == (os.cpu_count() or 1)  # unset: every core
    backend = load_backend(f"gguf:{model}")
    assert isinstance(backend, LlamaCppBackend) and backend.identity == "gguf:m.gguf"


def test_missing_gguf_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such GGUF file"):
        load_backend(f"gguf:{tmp_path / 'nope.gguf'}")


def test_local_without_its_extra_is_one_line_naming_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    import pytest as _pytest

    from synthcodec.errors import MissingExtraError
    from synthcodec.llm import check_spec

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with _pytest.raises(MissingExtraError, match=r"synthcodec\[local\]"):
        check_spec("local")
    check_spec("m@http://127.0.0.1:9/v1")  # a served model needs no llama.cpp
