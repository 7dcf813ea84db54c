"""`synthcodec push`: a run as a Hugging Face Hub dataset with a data card; the logic is
synthcodec.push."""

from __future__ import annotations

import click

from synthcodec.errors import MissingExtraError
from synthcodec.push import DEFAULT_LICENSE, PUSH_FORMATS


@click.command("push")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, metavar="OWNER/NAME", help="The dataset repository.")
@click.option("--private", is_flag=True, help="Create the repository private.")
@click.option("--format", "fmt", type=click.Choice(PUSH_FORMATS), default="lineage",
              show_default=True, help="lineage: the rows as the run wrote them; alpaca / openai / "
                                      "sharegpt: those training columns first, lineage after.")
@click.option("--with-rejected", is_flag=True,
              help="Also upload the rejected rows, as a second config `rejected`.")
@click.option("--license", "license_text", default=DEFAULT_LICENSE, show_default=True,
              help="The licence of your seed/input data (an id such as apache-2.0, or a note).")
@click.option("--to-dir", type=click.Path(file_okay=False), default=None,
              help="Write the repository folder here instead of uploading (no network).")
def command(run_dir: str, repo_id: str, private: bool, fmt: str, with_rejected: bool,
            license_text: str, to_dir: str | None) -> None:
    """Push RUN's kept rows (Parquet), charts and a generated data card to the Hugging Face
    Hub as dataset OWNER/NAME, with the token in $HF_TOKEN ($HF_ENDPOINT: another Hub).
    Rows marked by hand in `synthcodec view` (RUN/review.jsonl) are honoured."""
    try:
        import huggingface_hub  # noqa: F401
    except ModuleNotFoundError as exc:
        raise MissingExtraError(str(exc.name), "hf", "synthcodec push") from None
    from synthcodec.push import push

    pushed = push(run_dir, repo_id, private=private, fmt=fmt, with_rejected=with_rejected,
                  license_text=license_text, to_dir=to_dir)
    where = pushed.url or str(pushed.folder)
    rejected = ""
    if with_rejected:
        rejected = (f" and {pushed.rejected} rejected rows" if pushed.rejected
                    else " (no rejected rows: the `rejected` config is left out)")
    click.echo(f"{'pushed' if pushed.url else 'wrote'} {pushed.kept} kept rows{rejected} to {where}",
               err=True)
