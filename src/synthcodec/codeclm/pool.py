"""The metadata pool: observed (use case, skills) pairs first, then seeded mix-and-match.

Pure functions over rows, so the pool is reproducible from `encoded.jsonl` and a seed, and
a user can write `metadata.jsonl` by hand instead (only `use_case` and `skills` are needed).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from synthcodec.errors import InputError, UserError

Row = dict[str, Any]
MAX_SKILLS = 3


def _key(use_case: str, skills: Iterable[str]) -> tuple[str, frozenset[str]]:
    return use_case.strip().lower(), frozenset(s.strip().lower() for s in skills)


def build_pool(encoded: Iterable[Mapping[str, Any]], size: int, seed: int = 0,
               max_tries_per_entry: int = 50) -> list[Row]:
    """Up to `size` entries `{id, use_case, skills, seed_ids, source}`.

    Observed pairs keep their seeds (merged when several seeds share a pair); mixed entries
    pair a use case drawn from the seeds' use cases (so frequent use cases stay frequent)
    with 1-3 skills drawn without replacement from all skills, and record the seeds behind
    that use case and those skills as their lineage.
    """
    observed: dict[tuple[str, frozenset[str]], Row] = {}
    use_case_seeds: dict[str, list[str]] = {}
    skill_seeds: dict[str, list[str]] = {}
    use_cases: list[str] = []  # one per seed: sampling follows the seeds' distribution
    for row in encoded:
        seed_id = str(row["seed_id"])
        use_case, skills = row["use_case"], list(row["skills"])
        use_cases.append(use_case)
        use_case_seeds.setdefault(use_case, []).append(seed_id)
        for skill in skills:
            skill_seeds.setdefault(skill, []).append(seed_id)
        entry = observed.setdefault(_key(use_case, skills), {
            "use_case": use_case, "skills": skills, "seed_ids": [], "source": "observed"})
        entry["seed_ids"].append(seed_id)

    pool = list(observed.values())[:size]
    seen = {_key(e["use_case"], e["skills"]) for e in pool}
    all_skills = sorted(skill_seeds)
    rng = random.Random(seed)
    tries = 0
    while len(pool) < size and all_skills and tries < max_tries_per_entry * size:
        tries += 1
        use_case = rng.choice(use_cases)
        k = rng.randint(1, min(MAX_SKILLS, len(all_skills)))
        skills = rng.sample(all_skills, k)
        key = _key(use_case, skills)
        if key in seen:
            continue
        seen.add(key)
        lineage = set(use_case_seeds[use_case])
        for skill in skills:
            lineage.update(skill_seeds[skill])
        pool.append({"use_case": use_case, "skills": skills,
                     "seed_ids": sorted(lineage, key=_natural), "source": "mixed"})
    return [{"id": f"m{i:04d}", **entry} for i, entry in enumerate(pool)]


def _natural(text: str) -> tuple[Any, ...]:
    """Sort 'seed_task_10' after 'seed_task_9'."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def check_pool_row(path: str, line: int, row: Mapping[str, Any], idx: int) -> Row:
    """One row of a (possibly hand-written) metadata file, checked and completed."""
    use_case = row.get("use_case")
    skills = row.get("skills")
    if not isinstance(use_case, str) or not use_case.strip():
        raise InputError(path, "needs a non-empty string", line=line, field="use_case")
    if isinstance(skills, str):
        skills = [s.strip() for s in skills.split(",") if s.strip()]
    if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
        raise InputError(path, "needs a list of strings (or one comma-separated string)",
                         line=line, field="skills")
    seed_ids = row.get("seed_ids") or []
    return {
        **row,
        "id": str(row.get("id") or f"m{idx:04d}"),
        "use_case": use_case.strip(),
        "skills": [s.strip() for s in skills if s.strip()],
        "seed_ids": [str(s) for s in seed_ids] if isinstance(seed_ids, list) else [str(seed_ids)],
        "source": row.get("source", "hand-written"),
    }


def check_pool(path: str, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> list[Row]:
    """Every (line, row) of a metadata file checked and completed: ids unique, not empty."""
    out, ids = [], set()
    for idx, (line, row) in enumerate(rows):
        entry = check_pool_row(path, line, row, idx)
        if entry["id"] in ids:
            raise InputError(path, f"duplicate id {entry['id']!r}", line=line, field="id")
        ids.add(entry["id"])
        out.append(entry)
    if not out:
        raise UserError(f"{path} has no entries")
    return out
