"""The viewer app without a browser: escaping, no path outside the run, tokens, binding."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
from starlette.testclient import TestClient  # noqa: E402

from synthcodec.viewer.app import Viewer  # noqa: E402
from tests.helpers import cli_env  # noqa: E402
from tests.viewer.browser import free_port  # noqa: E402


def client(run: Path, host: str = "127.0.0.1") -> tuple[Viewer, TestClient]:
    viewer = Viewer(run, host=host)
    return viewer, TestClient(viewer.app, base_url="http://127.0.0.1:8765")


def test_markup_in_rows_is_shown_as_text(gen_run: Path) -> None:
    viewer, c = client(gen_run)
    page = c.get("/?q=xss")
    assert page.status_code == 200
    assert "1 rows" in page.text and "&lt;script&gt;window.__xss" in page.text
    for i in range(1, 10):
        html = c.get(f"/row/{i}").text
        assert "<script>window.__xss" not in html and "<img src=x" not in html
    seed_row = c.get("/metadata").text
    assert "<script>" not in seed_row.split("</style>", 1)[1]
    pages = "".join(c.get(f"/row/{i}").text for i in range(1, 10))
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in pages
    assert "default-src 'none'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("path", [
    "/../config.json", "/row/../../etc/passwd", "/chart/..%2F..%2F..%2Fetc%2Fpasswd.png",
    "/chart/../../journal.sqlite", "/%2e%2e/%2e%2e/etc/passwd", "/static/../../etc/passwd",
    "/review.jsonl", "/journal.sqlite", "/metadata.jsonl"])
def test_no_path_outside_the_routes(gen_run: Path, path: str) -> None:
    (gen_run / "secret.txt").write_text("TOPSECRET")
    _, c = client(gen_run)
    r = c.get(path)
    assert r.status_code in (404, 405), (path, r.status_code)
    assert "root:" not in r.text and "TOPSECRET" not in r.text and '"stage"' not in r.text


def test_review_needs_the_page_token(gen_run: Path) -> None:
    viewer, c = client(gen_run)
    r = c.post("/review", data={"rid": "1", "status": "rejected", "token": "forged"},
               follow_redirects=False)
    assert r.status_code == 403 and not (gen_run / "review.jsonl").exists()
    r = c.post("/review", data={"rid": "1", "status": "rejected", "note": "n",
                                "token": viewer.token}, follow_redirects=False)
    assert r.status_code == 303 and (gen_run / "review.jsonl").exists()
    assert re.search(r'name="token" value="[^"]+"', c.get("/row/1").text)


def test_a_hand_review_shows_at_once_without_a_rebuild(gen_run: Path) -> None:
    viewer, c = client(gen_run)
    viewer.index.min_interval = 0
    db = viewer.index.db
    r = c.post("/review", data={"rid": "1", "status": "kept", "note": "fine by me",
                                "token": viewer.token}, follow_redirects=False)
    assert r.status_code == 303
    assert not viewer.index.refresh() and viewer.index.db is db  # review.jsonl: no rebuild
    html = c.get("/row/1").text
    assert "by hand" in html and "fine by me" in html
    c.post("/review", data={"rid": "1", "status": "clear", "token": viewer.token})
    assert "by hand" not in c.get("/row/1").text
    assert viewer.index.db is db


def test_metadata_pool_edit_is_checked_and_atomic(gen_run: Path) -> None:
    viewer, c = client(gen_run)
    bad = c.post("/metadata", data={"token": viewer.token, "pool": '{"use_case": "x"}'})
    assert bad.status_code == 200 and "skills" in bad.text and 'id="error"' in bad.text
    good = '{"id": "m0000", "use_case": "poems", "skills": ["rhyme"]}\n'
    r = c.post("/metadata", data={"token": viewer.token, "pool": good})
    assert r.status_code == 200 and (gen_run / "metadata.jsonl").read_text() == good
    assert c.post("/metadata", data={"token": "x", "pool": good}).status_code == 403
    page = c.get("/metadata").text
    assert "Metadata pool (1 entries)" in page and "<td>poems</td>" in page


def test_metadata_pool_saved_with_a_byte_order_mark_reads_as_decode_reads_it(gen_run: Path) -> None:
    path = gen_run / "metadata.jsonl"
    n = len(path.read_text().splitlines())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Notepad saves it
    viewer, c = client(gen_run)
    page = c.get("/metadata").text
    assert f"Metadata pool ({n} entries)" in page and "\ufeff" not in page


@pytest.mark.parametrize("pool, error", [
    ('{"id": "a", "use_case": "x", "skills": ["s"]}\n{"id": "a", "use_case": "y", "skills": ["t"]}',
     "duplicate id"),
    ('{"use_case": "x", "skills": ["s"]}\n[1]', "not a JSON object"),
    ('{"use_case": "x", "skills": [1]}', "skills"),
    ("\n", "no entries"),
    ('{"use_case": "x", "skills": "rhyme, meter"}', ""),  # decode accepts a comma-separated string
])
def test_metadata_pool_check_is_the_pipelines(pool: str, error: str) -> None:
    from synthcodec.viewer.app import check_pool

    assert (error in check_pool(pool)) if error else check_pool(pool) == ""
    assert bool(check_pool(pool)) == bool(error)


def test_metadata_pool_is_not_written_into_other_runs(rate_run: Path) -> None:
    viewer, c = client(rate_run)
    good = '{"id": "m0000", "use_case": "poems", "skills": ["rhyme"]}\n'
    r = c.post("/metadata", data={"token": viewer.token, "pool": good})
    assert r.status_code == 404 and not (rate_run / "metadata.jsonl").exists()
    assert c.get("/metadata").status_code == 404


def test_foreign_host_header_is_refused(gen_run: Path) -> None:
    """DNS rebinding: a page on evil.example cannot talk to the loopback viewer."""
    _, c = client(gen_run)
    assert c.get("/", headers={"host": "evil.example"}).status_code == 400


def _listening(port: int) -> set[str]:
    """Local addresses listening on `port`, from /proc/net/tcp (IPv4)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":
            out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return out


def _start(run: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "synthcodec", "view", str(run), "--port",
                             str(port), *args], stderr=subprocess.PIPE, text=True, env=cli_env())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(proc.stderr.read() if proc.stderr else "did not start")


def test_binds_loopback_by_default_and_warns_otherwise(gen_run: Path) -> None:
    proc, port = _start(gen_run)
    try:
        assert _listening(port) == {"127.0.0.1"}
    finally:
        proc.terminate()
        err = proc.communicate(timeout=10)[1]
    assert "warning" not in err and f"http://127.0.0.1:{port}/" in err
    proc, port = _start(gen_run, "--host", "0.0.0.0")
    try:
        assert _listening(port) == {"0.0.0.0"}
    finally:
        proc.terminate()
        err = proc.communicate(timeout=10)[1]
    assert "warning: serving on 0.0.0.0" in err


def test_the_runs_judge_card_is_on_the_first_page(gen_run: Path, cmp_run: Path) -> None:
    import json

    card = json.loads((gen_run / "judge_card.json").read_text())
    page = client(gen_run)[1].get("/").text
    assert 'id="judge-card"' in page and f"judge check: {card['verdict']}" in page
    assert "judge-card" not in client(cmp_run)[1].get("/").text.split("<style>")[-1].split(
        "</style>")[-1]  # its answers are too short to probe: no card, no line
