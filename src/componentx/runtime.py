"""What every stage script shares: params, logging, atomic outputs and clean failures."""

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

from componentx.errors import StageError

log = logging.getLogger("componentx")


def section_config(cls: type, params: dict[str, Any], section: str, **set_by_code: Any) -> Any:
    """A config dataclass from a params section (validated by :func:`load_params`), plus the
    fields that code sets (sizes known only from the data)."""
    return cls(**params[section], **set_by_code)


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


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main with logging.

    Bad input or params exit 1 with a one-line error (COMPONENTX_DEBUG=1 shows the traceback).
    """
    logging.basicConfig(level=os.environ.get("COMPONENTX_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        main()
    except (StageError, ValueError, FileNotFoundError) as error:
        if os.environ.get("COMPONENTX_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
