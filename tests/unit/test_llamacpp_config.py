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
