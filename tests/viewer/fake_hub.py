"""A local stand-in for the Hugging Face Hub's HTTP API, enough for `HfApi.create_repo` and
`HfApi.upload_folder` (preupload answers "regular" for every file, so contents travel
inline, base64, in the commit's NDJSON). Started by the push test on 127.0.0.1; point
$HF_ENDPOINT at it."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.cards: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
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

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append(("GET", self.path, dict(self.headers)))
                self._send(404, {"error": "not here"})

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

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
