"""`gguf:hf:OWNER/REPO/FILE.gguf` end to end: the embedded SmolLM2 GGUF served by a stand-in
Hub on 127.0.0.1, downloaded by `synthcodec complete` into a fresh Hugging Face cache, checked
and run; then run again offline from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import read_jsonl, synthcodec, write_jsonl
from tests.viewer.fake_hub import FakeHub

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("require_embedded")]
pytest.importorskip("huggingface_hub")


def test_a_hub_gguf_downloads_once_and_runs(tmp_path: Path) -> None:
    from synthcodec.llm.llamacpp import default_gguf

    rows = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Name the capital of France."}])
    with FakeHub() as hub:
        hub.serve_file("me/smol-GGUF", "smollm2-135m-q4_1.gguf", default_gguf())
        # HF_HUB_OFFLINE: the test conftest sets it to 1 for every test
        env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "hf"),
               "SYNTHCODEC_CACHE": str(tmp_path / "requests.sqlite"),
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        spec = "gguf:hf:me/smol-GGUF/smollm2-135m-q4_1.gguf"
        first = synthcodec("complete", str(rows), "--model", spec, "--max-tokens", "8",
                           "-o", str(tmp_path / "run1"), "-q", env=env, timeout=300)
        assert first.returncode == 0, first.stderr
        assert "downloading me/smol-GGUF/smollm2-135m-q4_1.gguf" in first.stderr
        assert read_jsonl(tmp_path / "run1" / "output.jsonl")[0]["response"]
        downloads = [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]
        assert len(downloads) == 1  # checked twice (the spec, then the backend), fetched once
    offline = synthcodec("complete", str(rows), "--model", spec, "--max-tokens", "8", "--no-cache",
                         "-o", str(tmp_path / "run2"), "-q",
                         env={**env, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert offline.returncode == 0, offline.stderr
    assert "downloading" not in offline.stderr
