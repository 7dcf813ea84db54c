"""`synthcodec view`: a small Starlette app, server-rendered with Jinja2 (autoescaped), over
one run directory. Nothing is loaded from the internet: CSS is inline and charts are PNGs
made here with matplotlib. Only files of the run are read, by fixed names (no route takes a
path); the only writes are RUN/review.jsonl (append) and RUN/metadata.jsonl (atomic
rewrite), from forms that carry this process's token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from synthcodec.codeclm.pool import check_pool as check_metadata_pool
from synthcodec.errors import UserError
from synthcodec.judging.check import read_card
from synthcodec.rundir_reader import KEPT, REJECTED, STATUSES, Run, append_review, jsonl_objects
from synthcodec.store import atomic_writer
from synthcodec.viewer import charts
from synthcodec.viewer.index import Filters, RowIndex

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Viewer:
    def __init__(self, run_dir: str | Path, *, host: str = "127.0.0.1") -> None:
        self.run = Run(run_dir)
        self.index = RowIndex(self.run)
        self.token = secrets.token_urlsafe(24)  # review forms must carry it (no cross-site POSTs)
        self.env = Environment(loader=PackageLoader("synthcodec.viewer", "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.filters["pretty"] = _pretty
        self.env.filters["fmt"] = _fmt
        self._charts: dict[tuple[str, int], bytes] = {}
        hosts = LOOPBACK_HOSTS if is_loopback(host) else ["*"]
        self.app = Starlette(
            routes=[Route("/", self.home), Route("/row/{rid:int}", self.row),
                    Route("/review", self.review, methods=["POST"]),
                    Route("/metadata", self.metadata, methods=["GET", "POST"]),
                    Route("/chart/{name:str}.png", self.chart)],
            middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])

    # ------------------------------------------------------------------ helpers

    def _page(self, template: str, **ctx: Any) -> HTMLResponse:
        status = self.run.status()
        html = self.env.get_template(template).render(
            run=self.run, path=str(self.run.path), kind=self.run.kind, live=status == "live",
            status=status, token=self.token, counts=self.index.counts,
            models=self.run.models(), **ctx)
        return HTMLResponse(html, headers={
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src "
                                       "'unsafe-inline'; form-action 'self'; frame-ancestors "
                                       "'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    def _check_token(self, form: Any) -> bool:
        return hmac.compare_digest(str(form.get("token", "")), self.token)

    # ------------------------------------------------------------------ routes

    async def home(self, request: Request) -> Response:
        self.index.refresh()
        f = Filters.from_query(request.query_params)
        page = self.index.page(f)

        def link(**override: Any) -> str:
            return "/?" + urlencode(f.query(**override))

        return self._page("index.html", f=f, page=page, facets=self.index.facets, link=link,
                          charts=[(c, charts.TITLES[c]) for c in charts.charts_for(self.run.kind)],
                          version=self.index.version, statuses=STATUSES, cost=self.run.cost(),
                          judge_card=read_card(self.run.path))

    async def row(self, request: Request) -> Response:
        row = self.index.get(int(request.path_params["rid"]))
        if row is None:
            return HTMLResponse("no such row", status_code=404)
        return self._page("row.html", row=row, rid=request.path_params["rid"],
                          lineage=self.run.lineage(row), back=request.headers.get("referer", ""),
                          saved=request.query_params.get("saved"))

    async def review(self, request: Request) -> Response:
        form = await request.form()
        if not self._check_token(form):
            return HTMLResponse("forbidden: this form did not come from the viewer page",
                                status_code=403)
        status, note = str(form.get("status", "")), str(form.get("note", ""))[:2000]
        try:
            rid = int(str(form.get("rid", "")))
        except ValueError:
            return HTMLResponse("bad row", status_code=400)
        row = self.index.get(rid)
        if row is None or status not in (KEPT, REJECTED, "clear"):
            return HTMLResponse("bad review", status_code=400)
        self.index.mark(append_review(self.run.path, row.key, status, note))
        return RedirectResponse(f"/row/{rid}?saved=1", status_code=303)

    async def metadata(self, request: Request) -> Response:
        if self.run.kind != "generate":
            return HTMLResponse("the metadata pool belongs to generate runs", status_code=404)
        error = saved = ""
        path = self.run.path / "metadata.jsonl"
        text = pool = path.read_text(encoding="utf-8-sig") if path.exists() else ""
        if request.method == "POST":
            form = await request.form()
            if not self._check_token(form):
                return HTMLResponse("forbidden: this form did not come from the viewer page",
                                    status_code=403)
            pool = str(form.get("pool", "")).replace("\r\n", "\n")
            error = check_pool(pool)
            if not error and self.run.live():
                error = "the run is being written right now: edit the pool once it stops"
            if not error:
                text = pool if pool.endswith("\n") or not pool else pool + "\n"
                with atomic_writer(path) as fh:
                    fh.write(text)
                saved = "saved"
        return self._page("metadata.html", pool=pool, error=error, saved=saved,
                          entries=list(jsonl_objects(text.splitlines())),
                          decoded=self.run.decoded())

    async def chart(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in charts.charts_for(self.run.kind):
            return Response("no such chart", status_code=404)
        self.index.refresh()
        key = (name, self.index.version)
        if key not in self._charts:
            self._charts = {k: v for k, v in self._charts.items() if k[1] == self.index.version}
            self._charts[key] = charts.render(name, self.run, self.index)
        return Response(self._charts[key], media_type="image/png",
                        headers={"Cache-Control": "no-store"})


def check_pool(text: str) -> str:
    """'' when `text` is a metadata pool the pipeline accepts (codeclm.pool.check_pool),
    else why not."""
    rows = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            return f"line {line}: not JSON ({exc})"
        if not isinstance(row, dict):
            return f"line {line}: not a JSON object"
        rows.append((line, row))
    try:
        check_metadata_pool("metadata.jsonl", rows)
    except UserError as exc:
        return str(exc)
    return ""


def serve(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8765,
          echo: Any = print) -> None:
    import uvicorn

    viewer = Viewer(run_dir, host=host)
    if not is_loopback(host):
        echo(f"warning: serving on {host}: anyone who can reach this interface can read the run "
             "and mark rows (the viewer has no login). Use the default 127.0.0.1 unless you "
             "mean it.")
    shown = f"[{host}]" if ":" in host else host
    echo(f"synthcodec view: {viewer.run.kind} run {viewer.run.path} "
         f"({sum(viewer.index.counts.values())} rows) at http://{shown}:{port}/  (Ctrl-C stops)")
    uvicorn.run(viewer.app, host=host, port=port, log_level="warning")
