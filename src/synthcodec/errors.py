"""The few errors a user sees. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a bad option, a missing file, a run dir in the wrong state."""

    exit_code = 2


class EveryRecordFailed(UserError):
    """Records came in and every one failed: exit code 1 (the run directory holds why)."""

    exit_code = 1


class Drain(Exception):
    """Raised by a step instead of doing its record: the record stays to do (the next run
    does it) and the executor takes no new records; those in flight finish (a budget cap
    is one, see synthcodec.cost.BudgetReached)."""


class InputError(UserError):
    """Bad input data, located by file, line and field."""

    def __init__(self, path: object, message: str, *, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path + (f":{line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


class MissingExtraError(UserError):
    """An optional dependency is not installed; names the extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'synthcodec[{extra}]'"
        )
