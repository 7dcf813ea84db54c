"""`synthcodec view`: a local web viewer over a run directory (see docs/viewer.md).

`synthcodec.viewer.app` needs the `view` extra (Starlette, Jinja2, uvicorn); `index` and
`charts` need only the core dependencies (push uses them)."""

from typing import Any


def create_app(run_dir: Any, **kw: Any) -> Any:
    from synthcodec.viewer.app import create_app as make

    return make(run_dir, **kw)


def serve(run_dir: Any, **kw: Any) -> None:
    from synthcodec.viewer.app import serve as run

    run(run_dir, **kw)
