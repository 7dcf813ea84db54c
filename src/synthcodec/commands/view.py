"""`synthcodec view`: a local web page over a run directory; the app is synthcodec.viewer."""

from __future__ import annotations

import click

from synthcodec.errors import MissingExtraError


@click.command("view")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The interface to listen on. Anything but this machine's loopback exposes "
                   "the run (and its review forms) to your network: a warning is printed.")
def command(run_dir: str, port: int, host: str) -> None:
    """Browse RUN (finished or still running) in a local web page: rows with status, reason
    and scores, filters and search, each row's lineage, charts, and review by hand
    (RUN/review.jsonl, honoured by `select` and `push`). Needs synthcodec[view]."""
    try:
        from synthcodec.viewer.app import serve
    except ModuleNotFoundError as exc:
        raise MissingExtraError(str(exc.name), "view", "synthcodec view") from None
    serve(run_dir, host=host, port=port, echo=lambda m: click.echo(m, err=True))
