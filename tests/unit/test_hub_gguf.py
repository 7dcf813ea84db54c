"""A GGUF on the Hub as a model spec: downloaded once into huggingface_hub's cache, its sha256
checked, then from the cache (offline too); against a stand-in Hub on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthcodec.errors import UserError
from synthcodec.llm import check_spec
from synthcodec.llm.hub import hub_file, parse_hub_spec
from tests.viewer.fake_hub import FakeHub

pytest.importorskip("huggingface_hub")
from huggingface_hub import constants  # noqa: E402

SPEC = "gguf:hf:me/tiny-GGUF/tiny-q4.gguf"


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("SYNTHCODEC_CACHE", str(tmp_path / "sc" / "requests.sqlite"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub read HF_HUB_OFFLINE (set by tests/conftest.py) when an earlier test
    # imported it: its own constant must say online too, or every call is refused.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    model = tmp_path / "tiny-q4.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 4000)
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake, model


def test_spec_spelling() -> None:
    assert parse_hub_spec(SPEC) == ("me/tiny-GGUF", "tiny-q4.gguf", None)
    assert parse_hub_spec("gguf:hf:a/b/sub/x.gguf@v1") == ("a/b", "sub/x.gguf", "v1")
    for bad in ("gguf:hf:a/x.gguf", "gguf:hf:a/b/x.bin", "gguf:hf:a/b/x.gguf@"):
        with pytest.raises(UserError, match="gguf:hf:OWNER/REPO/FILE.gguf"):
            parse_hub_spec(bad)


def test_downloads_once_checks_sha256_then_uses_the_cache(  # type: ignore[no-untyped-def]
        hub_env, monkeypatch) -> None:
    fake, model = hub_env
    fake.serve_file("me/tiny-GGUF", "tiny-q4.gguf", model)
    path = hub_file(SPEC)
    assert path.read_bytes() == model.read_bytes() and "hf" in str(path)
    gets = [r for r in fake.requests if r[0] == "GET" and "/resolve/" in r[1]]
    assert len(gets) == 1
    check_spec(SPEC)  # checked again: only the metadata is asked, nothing downloaded
    before = len(fake.requests)
    assert hub_file(SPEC) == path
    assert [method for method, *_ in fake.requests[before:]] == ["HEAD"]  # once, ours
    assert len([r for r in fake.requests if r[0] == "GET" and "/resolve/" in r[1]]) == 1
    record = Path(str(constants.HF_HUB_CACHE)).parent / "sc" / "checked_gguf.json"
    assert str(path.resolve()) in record.read_text()
    # offline: the cached file, no request at all
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(fake.requests)
    assert hub_file(SPEC) == path and len(fake.requests) == before


def test_a_wrong_sha256_deletes_the_file_and_says_so(  # type: ignore[no-untyped-def]
        hub_env) -> None:
    fake, model = hub_env
    fake.serve_file("me/tiny-GGUF", "tiny-q4.gguf", model, sha256="0" * 64)
    with pytest.raises(UserError, match="sha256 is [0-9a-f]{64}, not the Hub's 0{64}"):
        hub_file(SPEC)
    assert not any(p.is_file() and p.stat().st_size == model.stat().st_size
                   for p in Path(str(constants.HF_HUB_CACHE)).rglob("*"))


def test_offline_without_the_file_says_what_to_download(  # type: ignore[no-untyped-def]
        hub_env, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="hf download me/tiny-GGUF tiny-q4.gguf"):
        hub_file(SPEC)


def test_a_file_the_hub_lacks_is_a_clear_error(hub_env) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="is not on the Hub"):
        hub_file(SPEC)
