"""The errors a stage reports as one line (file, column, line, or what to do) and exit 1."""


class StageError(Exception):
    """Bad input, params or state that the user can fix; no traceback needed."""
