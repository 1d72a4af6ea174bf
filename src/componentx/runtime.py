"""What every stage script shares: logging, atomic outputs and clean failures."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from componentx.errors import UserError

log = logging.getLogger("componentx")


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target`` that replaces it only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``target`` through a temporary file in its folder, fsync'ed, then renamed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(target: str | Path, payload: Any) -> None:
    atomic_write_bytes(target, (json.dumps(payload, indent=2) + "\n").encode())


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("COMPONENTX_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's (or a command's) main with logging.

    A :class:`~componentx.errors.UserError` exits 1 with its one line
    (``COMPONENTX_DEBUG=1`` shows the traceback); any other exception is a bug and keeps its
    traceback.
    """
    setup_logging()
    try:
        main()
    except UserError as error:
        if os.environ.get("COMPONENTX_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
