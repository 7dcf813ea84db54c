"""`synthcodec push`: a run's kept rows as a Hugging Face dataset repository (Parquet + a
generated data card + charts), written to a folder and uploaded with `huggingface_hub`.
The card itself (what the rows are, how to make them again) is datacard.py.

Rows come from `rundir_reader` (the one reader of the run layout) and honour RUN/review.jsonl:
a row marked rejected by hand is left out of the kept split (and goes to the rejected one);
a row marked kept by hand is kept.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthcodec.datacard import build_card
from synthcodec.errors import UserError
from synthcodec.formats import Example, alpaca_record, openai_record, sharegpt_record
from synthcodec.io import write_parquet
from synthcodec.rundir_reader import FAILED, KEPT, REJECTED, Run, ViewRow
from synthcodec.store import dumps

PUSH_FORMATS = ("lineage", "alpaca", "openai", "sharegpt")
DEFAULT_LICENSE = "unknown: check your seed/input data's licence"
MARKER = ".synthcodec-push"  # in every folder build_folder writes: only such a folder is replaced

@dataclass
class Pushed:
    folder: Path
    kept: int
    rejected: int
    url: str | None = None


def _json_cols(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nested columns (dicts, lists of anything but strings) as JSON text, decided per
    column over all rows: Parquet needs one type per column, and the rows of one run do not
    always agree (a null action, an empty history). Every row gets every column."""
    columns: dict[str, None] = {}
    nested: set[str] = set()
    for row in rows:
        for k, v in row.items():
            columns.setdefault(k)
            if isinstance(v, dict) or (isinstance(v, list) and any(not isinstance(x, str)
                                                                   for x in v)):
                nested.add(k)
    out = []
    for row in rows:
        out.append({k: (dumps(row[k]) if k in nested and row.get(k) is not None
                        else row.get(k)) for k in columns})
    return out


def _example(run: Run, row: dict[str, Any]) -> Example:
    if run.kind == "generate":
        return Example.of(str(row.get("instruction", "")), str(row.get("response", "")))
    fields = run.config.get("fields") or {}
    resp = row.get(fields.get("response", "response"))
    return Example.of(str(row.get(fields.get("instruction", "instruction"), "")),
                      resp if isinstance(resp, str) else dumps(resp),
                      str(row.get(fields.get("input", "input"), "") or ""))


def shaped(run: Run, rows: list[ViewRow], fmt: str) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        data = dict(r.data)
        if r.review:
            data["review"] = {"status": r.review["status"], "note": r.review.get("note", "")}
        if r.status != KEPT and r.reason and "reason" not in data:
            data["reason"] = r.reason
        if fmt == "lineage" or run.kind == "compare":
            out.append(data)
            continue
        ex = _example(run, data)
        head = {"alpaca": alpaca_record, "openai": openai_record,
                "sharegpt": sharegpt_record}[fmt](ex)
        out.append({**head, **{f"lineage_{k}" if k in head else k: v for k, v in data.items()
                               if k not in ("instruction", "input", "output", "response")}})
    return _json_cols(out)


@dataclass
class Split:
    kept: list[ViewRow]
    rejected: list[ViewRow]
    failed: int  # counted only: failed rows were never judged, they go nowhere
    reviewed: int  # rows a person marked by hand (review.jsonl)


def split_rows(run: Run, rows: Iterable[ViewRow]) -> Split:
    """`rows` (run.rows()) into kept and rejected after hand review, in one pass."""
    split = Split([], [], 0, 0)
    for row in rows:
        split.failed += row.status == FAILED
        split.reviewed += row.review is not None
        if run.kind == "generate" and row.stage != "loop":
            continue  # stage-level rejects (a seed that could not be encoded) are not rows
        final = row.final_status
        if final == KEPT:
            split.kept.append(row)
        elif final == REJECTED:
            split.rejected.append(row)
    return split




# ---------------------------------------------------------------------- reproduce

# ---------------------------------------------------------------------- the folder

def build_folder(run_dir: str | Path, folder: str | Path, repo_id: str, *, fmt: str = "lineage",
                 with_rejected: bool = False, license_text: str = DEFAULT_LICENSE) -> Pushed:
    if fmt not in PUSH_FORMATS:
        raise UserError(f"--format must be one of {', '.join(PUSH_FORMATS)}")
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", repo_id):
        raise UserError(f"--repo-id must look like OWNER/NAME, not {repo_id!r}")
    run = Run(run_dir)
    if run.kind == "unknown":
        raise UserError(f"{run_dir} is not a synthcodec run directory")
    state = run.status()
    if state != "complete":
        raise UserError(f"{run_dir} is {state}: finish the run (run the same command again) "
                        "before pushing it")
    rows = list(run.rows())
    split = split_rows(run, rows)
    if not split.kept:
        # A Parquet file of no rows cannot be loaded with `datasets` (ArrowInvalid).
        raise UserError(f"{run_dir} has no kept rows: nothing to push (its rejected.jsonl and "
                        "failed.jsonl say why rows were dropped)")
    with_rejected = with_rejected and bool(split.rejected)
    out = Path(folder)
    check_replaceable(out)
    # Built beside the target and swapped in at the end: a crash mid-push leaves the last
    # good folder as it was (and a hidden .NAME.push-* folder), never a half one.
    out.parent.mkdir(parents=True, exist_ok=True)
    new = out.parent / f".{out.name}.push-{secrets.token_hex(4)}"
    new.mkdir()  # honours the umask, as the folder it replaces did
    try:
        (new / MARKER).write_text("written by synthcodec push; replaced by the next push here\n")
        write_parquet(new / "data" / "train-00000.parquet", shaped(run, split.kept, fmt))
        if with_rejected:
            write_parquet(new / "rejected" / "train-00000.parquet",
                          shaped(run, split.rejected, fmt))
        charts = _write_charts(run, new / "charts", rows)
        card = build_card(run, repo_id, kept=len(split.kept), rejected=len(split.rejected),
                          failed=split.failed, reviewed=split.reviewed, fmt=fmt,
                          license_text=license_text, with_rejected=with_rejected, charts=charts)
        card.save(new / "README.md")
        _swap_in(new, out)
    except BaseException:
        _remove_own(new)
        raise
    return Pushed(out, len(split.kept), len(split.rejected))


# Everything build_folder writes, relative to the folder: a later push replaces these and
# nothing else.
OWN_FILES = frozenset({MARKER, "README.md", "data/train-00000.parquet",
                       "rejected/train-00000.parquet",
                       *(f"charts/{name}.png" for name in ("scores", "gaps", "iterations", "wtl"))})
OWN_DIRS = frozenset({"data", "rejected", "charts"})


def check_replaceable(out: Path) -> None:
    """UserError unless `out` is new, empty, or a folder push wrote holding only its files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise UserError(f"{out} is a non-empty folder that synthcodec push did not write: "
                        "give an empty or new folder (one push wrote before is replaced)")
    foreign = sorted(rel for rel in _entries(out) if rel not in OWN_FILES | OWN_DIRS)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise UserError(f"{out / foreign[0]}{more} was not written by synthcodec push, which "
                        "replaces the whole folder: move it out, or push to another folder")


def _entries(folder: Path) -> list[str]:
    """Every file and folder under `folder` (hidden ones too; links not followed), relative."""
    out = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            out.append((Path(root) / name).relative_to(folder).as_posix())
    return out


def _swap_in(new: Path, out: Path) -> None:
    """Put the finished folder `new` in place of `out` (checked by check_replaceable)."""
    if not out.exists():
        os.rename(new, out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    os.rename(out, old)
    os.rename(new, out)
    _remove_own(old)


def _remove_own(folder: Path) -> None:
    """Delete what push writes in `folder`, then the folder if that emptied it: a file push
    did not write (one added since the check) is never deleted."""
    for rel in OWN_FILES:
        (folder / rel).unlink(missing_ok=True)
    for rel in (*OWN_DIRS, "."):
        try:
            (folder / rel).rmdir()
        except OSError:  # missing, or holds something that is not ours: left as it is
            pass


def _write_charts(run: Run, folder: Path, rows: list[ViewRow]) -> list[tuple[str, str]]:
    from synthcodec.viewer import charts
    from synthcodec.viewer.index import RowIndex

    index = RowIndex(run, rows)
    names = [n for n in ("scores", "gaps", "iterations", "wtl") if n in charts.charts_for(run.kind)]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        (folder / f"{name}.png").write_bytes(charts.render(name, run, index))
        out.append((f"charts/{name}.png", charts.TITLES[name]))
    return out


def push(run_dir: str | Path, repo_id: str, *, private: bool = False, fmt: str = "lineage",
         with_rejected: bool = False, license_text: str = DEFAULT_LICENSE,
         to_dir: str | Path | None = None) -> Pushed:
    """Write the repository folder (to `to_dir`, or a temporary one) and, without `to_dir`,
    upload it to the Hub with $HF_TOKEN ($HF_ENDPOINT for another Hub)."""
    if to_dir is not None:
        return build_folder(run_dir, to_dir, repo_id, fmt=fmt, with_rejected=with_rejected,
                            license_text=license_text)
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise UserError("set $HF_TOKEN to a Hugging Face write token to push (or use --to-dir "
                        "DIR to write the repository folder locally)")
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="synthcodec-push-") as tmp:
        pushed = build_folder(run_dir, Path(tmp) / "repo", repo_id, fmt=fmt,
                              with_rejected=with_rejected, license_text=license_text)
        api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            info = api.upload_folder(folder_path=str(pushed.folder), repo_id=repo_id,
                                     repo_type="dataset", ignore_patterns=[MARKER],
                                     commit_message="synthcodec push: data, card and charts")
        except Exception as exc:  # noqa: BLE001 - the Hub's errors, shown without the token
            message = str(exc).replace(token, "***")
            raise UserError(f"upload to {repo_id} failed: {message}") from None
        pushed.url = getattr(info, "repo_url", None) or str(info)
        pushed.folder = Path(str(run_dir))
        return pushed
