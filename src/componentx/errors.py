"""The errors a user can fix: bad input files, params, arguments or project state.

The stage runner (:func:`componentx.runtime.run_stage`) and the command line print a
:class:`UserError` as one line and exit 1; every other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Something the user can fix; the message says what and, where it helps, how."""


class ParamsError(UserError):
    """A bad params file or key."""


class DatasetError(UserError):
    """Bad input data, located as precisely as possible: file, column, line (1-based, the
    header being line 1)."""

    def __init__(self, file: Path | str, message: str, column: str | None = None,
                 line: int | None = None) -> None:
        where = str(file)
        if column is not None:
            where += f", column '{column}'"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {message}")
        self.file, self.message, self.column, self.line = str(file), message, column, line

    def __reduce__(self) -> tuple:  # raised on a Dask worker, re-raised in the stage
        return type(self), (self.file, self.message, self.column, self.line)


class CheckpointError(UserError):
    """A checkpoint that cannot be used, with what to do about it."""


class BundleError(UserError):
    """A model bundle that this version cannot read, or that would need to run code to load."""
