"""Issue 18 §3: no credential of a model URL reaches a file or stream, whatever its name.

Every query-string value is a secret unless its key is known harmless (`api-version`);
an Authorization header a server echoes back is redacted, Basic as well as Bearer; and
`user:password@` written in a URL wins over `$SYNTHCODEC_API_KEY` for that URL.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from synthcodec.errors import UserError
from synthcodec.llm.openai_http import OpenAIHTTPBackend
from synthcodec.llm.spec import parse_http, redact_spec
from tests.helpers import read_jsonl, synthcodec, write_jsonl

# Query keys that carry credentials in the wild, none of which the old short list named.
QUERY_SECRETS = {"sig": "AzureSAS-sig-1111", "code": "fn-code-2222", "api_token": "tok-3333",
                 "subscription-key": "subkey-4444", "password": "pw-5555",
                 "hf_token": "hf_6666secret", "auth": "auth-7777"}


def test_every_query_value_is_redacted_but_api_version() -> None:
    query = "&".join(f"{k}={v}" for k, v in QUERY_SECRETS.items())
    spec = f"m@https://x.example/v1?api-version=2024-02-01&{query}"
    shown = redact_spec(spec)
    for value in QUERY_SECRETS.values():
        assert value not in shown
    assert "api-version=2024-02-01" in shown and "sig=***" in shown
    assert parse_http(spec).identity == shown
    assert parse_http(spec).url.endswith(query)  # what is sent keeps them


def test_url_credentials_win_over_the_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHCODEC_API_KEY", "sk-env-key")
    backend = OpenAIHTTPBackend.for_endpoint(parse_http("m@http://bob:pw-9@127.0.0.1:1/v1"))
    token = base64.b64encode(b"bob:pw-9").decode()
    assert backend._headers["Authorization"] == f"Basic {token}"
    plain = OpenAIHTTPBackend.for_endpoint(parse_http("m@http://127.0.0.1:1/v1"))
    assert plain._headers["Authorization"] == "Bearer sk-env-key"
    with pytest.raises(UserError, match="two credentials for one URL"):
        parse_http("m@http://bob:pw@127.0.0.1:1/v1#key=SYNTHCODEC_API_KEY")


def _scan(secrets: list[str], run: Path, *streams: str) -> None:
    for f in [p for p in run.rglob("*") if p.is_file()]:
        data = f.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (secret, f)
    for text in streams:
        for secret in secrets:
            assert secret not in text, secret


def test_query_secrets_reach_no_file_stream_or_card(tmp_path: Path) -> None:
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(3)])
    query = "&".join(f"{k}={v}" for k, v in QUERY_SECRETS.items())
    run, card = tmp_path / "run", tmp_path / "card"
    with serve_in_subprocess() as (_, url):
        done = synthcodec("complete", str(src), "-m", f"m@{url}?{query}", "-o", str(run))
    assert done.returncode == 0, done.stderr
    pushed = synthcodec("push", str(run), "--repo-id", "me/data", "--to-dir", str(card))
    assert pushed.returncode == 0, pushed.stderr
    secrets = list(QUERY_SECRETS.values())
    _scan(secrets, run, done.stdout, done.stderr)
    _scan(secrets, card, pushed.stdout, pushed.stderr)
    config = json.loads((run / "config.json").read_text())
    assert "sig=***" in config["models"]["model"]


def test_an_echoed_authorization_header_is_redacted_basic_and_bearer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server quoting the Authorization header in its 400 put `Basic <base64>` into
    failed.jsonl and the journal; and with $SYNTHCODEC_API_KEY set, URL credentials went
    unused (Bearer was sent)."""
    from tests.mock_server import serve_in_subprocess

    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}"} for i in range(2)])
    password, env_key = "hunter2-PASSWORD", "sk-ENV-KEY-424242"
    token = base64.b64encode(f"alice:{password}".encode()).decode()
    with serve_in_subprocess(echo_auth_status=400) as (_, url):
        host = url.removeprefix("http://")
        basic = synthcodec("complete", str(src), "-m", f"m@http://alice:{password}@{host}",
                           "-o", str(tmp_path / "basic"), "--no-cache")
        monkeypatch.setenv("SYNTHCODEC_API_KEY", env_key)
        both = synthcodec("complete", str(src), "-m", f"m@http://alice:{password}@{host}",
                          "-o", str(tmp_path / "both"), "--no-cache")
        bearer = synthcodec("complete", str(src), "-m", f"m@{url}",
                            "-o", str(tmp_path / "bearer"), "--no-cache")
    for result, out in ((basic, "basic"), (both, "both"), (bearer, "bearer")):
        assert result.returncode == 1, result.stderr  # every record failed (HTTP 400)
        _scan([token, password, env_key], tmp_path / out, result.stdout, result.stderr)
    reason = read_jsonl(tmp_path / "basic" / "failed.jsonl")[0]["_synthcodec"]["reason"]
    assert "HTTP 400" in reason and "Basic ***" in reason
    # The URL's credentials won over the key in the environment for that URL.
    assert "Basic ***" in read_jsonl(tmp_path / "both" / "failed.jsonl")[0]["_synthcodec"]["reason"]
    assert "Bearer ***" in read_jsonl(tmp_path / "bearer" / "failed.jsonl")[0]["_synthcodec"]["reason"]
