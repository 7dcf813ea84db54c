"""A GGUF on the Hugging Face Hub as a model: `gguf:hf:OWNER/REPO/FILE.gguf[@REVISION]`.

The file is downloaded once into huggingface_hub's cache (resumable, with its progress bar;
`$HF_HOME`/`$HF_HUB_CACHE` say where, `$HF_ENDPOINT` which Hub, `$HF_TOKEN` for gated
repositories), its sha256 checked against the Hub's metadata (the LFS object id the Hub
sends as the file's ETag), then run in-process like `gguf:PATH`. A checked file is recorded
(path, size, modification time) beside the request cache, so it is hashed once, not at every
start. Offline (`$HF_HUB_OFFLINE=1`, or the Hub unreachable) the cached file is used, or one
line says what to download.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from synthcodec.errors import CannotWrite, MissingExtraError, UserError
from synthcodec.store import read_json, write_json

log = logging.getLogger(__name__)

__all__ = ["HUB_PREFIX", "hub_file", "parse_hub_spec"]

HUB_PREFIX = "gguf:hf:"  # llm/spec.py's "hub" kind matches it
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 8 << 20


def parse_hub_spec(spec: str) -> tuple[str, str, str | None]:
    """(repo id, file path in the repo, revision or None) of `gguf:hf:OWNER/REPO/FILE[@REV]`."""
    rest = spec.strip().removeprefix(HUB_PREFIX)
    revision = None
    if "@" in rest:
        rest, revision = rest.rsplit("@", 1)
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts) or not parts[-1].endswith(".gguf") or revision == "":
        raise UserError(f"model spec {spec!r}: write gguf:hf:OWNER/REPO/FILE.gguf (optionally "
                        "@REVISION), e.g. gguf:hf:Qwen/Qwen2.5-7B-Instruct-GGUF/"
                        "qwen2.5-7b-instruct-q4_k_m.gguf")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_file(spec: str) -> Path:
    """The local path of the spec's GGUF: downloaded and checked the first time, from the
    cache after that (also offline). UserError naming what to do when it cannot be had."""
    try:
        import huggingface_hub as hub
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        raise MissingExtraError("huggingface_hub", "hf", f"model spec {spec!r}") from None
    repo, filename, revision = parse_hub_spec(spec)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    what = f"{repo}/{filename}" + (f"@{revision}" if revision else "")
    meta = None
    if not _offline():
        try:
            meta = hub.get_hf_file_metadata(hub.hf_hub_url(repo, filename, revision=revision,
                                                           endpoint=endpoint))
        except (RepositoryNotFoundError, EntryNotFoundError) as exc:
            raise UserError(f"model spec {spec!r}: {what} is not on the Hub "
                            f"({type(exc).__name__}; a gated or private repository needs "
                            "$HF_TOKEN)") from None
        except Exception:  # noqa: BLE001 - no connection, timeout, 5xx: try the cache
            meta = None
    if meta is None:
        cached = hub.try_to_load_from_cache(repo, filename, revision=revision)
        if isinstance(cached, str):
            return Path(cached)
        raise UserError(f"model spec {spec!r}: the Hub cannot be reached and {what} is not in "
                        f"the Hugging Face cache; where the Hub is reachable, run: "
                        f"hf download {repo} {filename}"
                        + (f" --revision {revision}" if revision else ""))
    cached = hub.try_to_load_from_cache(repo, filename, revision=meta.commit_hash or revision)
    if isinstance(cached, str):  # the Hub's current file is in the cache: nothing to ask
        path = Path(cached)
    else:
        size = f" ({meta.size / 1e9:.1f} GB)" if meta.size else ""
        log.info(f"downloading {what}{size} from {endpoint or 'the Hugging Face Hub'} into the "
                 "Hugging Face cache (once; an interrupted download resumes)")
        path = Path(hub.hf_hub_download(repo, filename, revision=revision, endpoint=endpoint))
    _check_sha256(path, meta.etag, spec)
    return path


def _record_file() -> Path:
    from synthcodec.cache import default_cache_path

    return default_cache_path().parent / "checked_gguf.json"


def _check_sha256(path: Path, etag: str | None, spec: str) -> None:
    """The file's sha256 must be the Hub's: an LFS file's ETag is its sha256 (anything
    else, e.g. a git blob id, cannot be checked this way and is let through)."""
    expected = (etag or "").strip('"').lower()
    if not _SHA256.match(expected):
        return
    real = path.resolve()
    stat = real.stat()
    stamp = [expected, stat.st_size, stat.st_mtime_ns]
    record_path = _record_file()
    records = read_json(record_path, {})
    if not isinstance(records, dict):
        records = {}
    if records.get(str(real)) == stamp:
        return
    digest = hashlib.sha256()
    with real.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    if digest.hexdigest() != expected:
        real.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise UserError(f"model spec {spec!r}: the downloaded file's sha256 is "
                        f"{digest.hexdigest()}, not the Hub's {expected}; it was deleted, run "
                        "again to download it anew")
    records[str(real)] = stamp
    try:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(record_path, records)
    except (OSError, CannotWrite):
        pass  # unrecorded: it is only hashed again next time
