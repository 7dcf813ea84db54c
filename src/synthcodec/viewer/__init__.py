"""`synthcodec view`: a local web viewer over a run directory (see docs/viewer.md).

`synthcodec.viewer.app` needs the `view` extra (Starlette, Jinja2, uvicorn); `index` and
`charts` need only the core dependencies (push uses them)."""
