"""`synthcodec view`: a local web viewer over a run directory (see docs/viewer.md)."""

from synthcodec.viewer.app import Viewer, create_app, serve

__all__ = ["Viewer", "create_app", "serve"]
