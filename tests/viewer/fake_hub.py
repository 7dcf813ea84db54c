"""A local stand-in for the Hugging Face Hub's HTTP API, enough for `HfApi.create_repo` and
`HfApi.upload_folder` (preupload answers "regular" for every file, so contents travel
inline, base64, in the commit's NDJSON), and for `hf_hub_download` of a model repository's
file (`serve_file`: HEAD with the LFS headers, GET with Range for resumed downloads).
Started by the push and Hub-model tests on 127.0.0.1; point $HF_ENDPOINT at it."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.cards: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        # "OWNER/REPO/FILE" -> (the file served, the sha256 the Hub claims for it)
        self.models: dict[str, tuple[Path, str]] = {}
        self.commit = "c" * 40
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _model(self) -> tuple[Path, str] | None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":  # OWNER/REPO/resolve/REV/FILE
                    return hub.models.get("/".join(parts[:2] + parts[4:]))
                return None

            def _file_headers(self, path: Path, sha: str, length: int) -> None:
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(path.stat().st_size))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                hub.requests.append(("HEAD", self.path, dict(self.headers)))
                model = self._model()
                if model is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self._file_headers(model[0], model[1], model[0].stat().st_size)

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append(("GET", self.path, dict(self.headers)))
                model = self._model()
                if model is None:
                    return self._send(404, {"error": "not here"})
                path, sha = model
                size = path.stat().st_size
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes="):
                    start = int(ranged.removeprefix("bytes=").split("-")[0] or 0)
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self._file_headers(path, sha, size - start)
                with path.open("rb") as fh:
                    fh.seek(start)
                    while block := fh.read(1 << 20):
                        self.wfile.write(block)

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                hub.requests.append(("POST", self.path, dict(self.headers)))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'me'}/{req['name']}" \
                        if "/" not in req["name"] else req["name"]
                    hub.repos[repo] = req
                    return self._send(200, {"url": f"{hub.url}/datasets/{repo}",
                                            "name": repo})
                if path == "/api/validate-yaml":  # the card's metadata: accepted
                    hub.cards.append(json.loads(body).get("content", ""))
                    return self._send(200, {"errors": [], "warnings": []})
                parts = path.strip("/").split("/")
                if len(parts) >= 6 and parts[0] == "api" and parts[4] == "preupload":
                    req = json.loads(body)
                    return self._send(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in req["files"]]})
                if len(parts) >= 6 and parts[0] == "api" and parts[4] == "commit":
                    repo = f"{parts[2]}/{parts[3]}"
                    store = hub.files.setdefault(repo, {})
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item.get("key") == "file":
                            v = item["value"]
                            store[v["path"]] = base64.b64decode(v["content"])
                    return self._send(200, {"commitUrl": f"{hub.url}/datasets/{repo}/commit/1",
                                            "commitOid": "1" * 40, "pullRequestUrl": None})
                self._send(404, {"error": f"no route {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve_file(self, repo: str, filename: str, path: Path, sha256: str | None = None) -> str:
        """Serve `path` as FILENAME of model repository REPO; the ETag is its sha256 unless
        `sha256` says otherwise (a corrupted download, as far as the client can tell)."""
        if sha256 is None:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            sha256 = digest.hexdigest()
        self.models[f"{repo}/{filename}"] = (path, sha256)
        return sha256

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
