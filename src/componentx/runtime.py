"""What every stage script shares: logging, atomic outputs and clean failures."""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from componentx.errors import UserError

log = logging.getLogger("componentx")
PR_SET_PDEATHSIG = 1  # prctl(2)


def _previous(target: Path) -> Path:
    """Where :func:`atomic_dir` keeps ``target``'s old content while it swaps the new in."""
    return target.parent / f".{target.name}.previous"


def _remove_leftovers(target: Path) -> None:
    """Temporary files or folders of ``target`` that a killed writer left behind (a stage is
    the only writer of its outputs: it holds their lock). A writer killed in the middle of
    :func:`atomic_dir`'s swap left the old output aside: it is put back first."""
    if not target.exists() and _previous(target).exists():
        os.replace(_previous(target), target)
    for leftover in target.parent.glob(f".{target.name}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target`` that replaces it only on success.

    The old ``target`` is renamed aside, the new one renamed in, then the old one deleted: at
    every instant one of them is whole, and a writer killed between the two renames leaves
    the old one aside, where the next writer (or a failure here) puts it back."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            os.replace(target, _previous(target))
        os.replace(tmp, target)
        shutil.rmtree(_previous(target), ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if not target.exists() and _previous(target).exists():
            os.replace(_previous(target), target)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``target`` through a temporary file in its folder, fsync'ed, then renamed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
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


def exit_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; elsewhere nothing), so
    that the workers a stage starts never outlive it, even after a SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request
        os._exit(1)


_lock: int | None = None  # this process's lock on its stage's outputs


def lock_path(stage: str) -> Path:
    """Where the lock of a stage's outputs lives: DVC's temporary folder of the project (or
    the system's, outside a DVC project)."""
    folder = Path(".dvc/tmp") if Path(".dvc").is_dir() else Path(tempfile.gettempdir()) / (
        "componentx-" + hashlib.sha256(str(Path.cwd()).encode()).hexdigest()[:12])
    (folder / "componentx-locks").mkdir(parents=True, exist_ok=True)
    return folder / "componentx-locks" / f"{stage}.lock"


def lock_stage(stage: str, shared: bool = False) -> None:
    """Hold the lock of ``stage``'s outputs until this process ends: exclusive for the stage
    itself, shared for the workers it starts (:func:`share_stage_lock` first). A stage whose
    outputs another process still writes (a killed run's workers) stops with one line."""
    global _lock
    fd = os.open(lock_path(stage), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(f"stage {stage}: another process (pid {holder}, or the workers it "
                        "started) is still writing its outputs; wait for it to end or stop "
                        "it") from None
    if not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    _lock = fd


def torchrun_command(processes: int, argv: list[str]) -> list[str] | None:
    """The command that runs this stage (``argv``: its script and arguments) again under
    torchrun with ``processes`` processes, or None when there is one process or this process
    already is one of torchrun's."""
    if processes <= 1 or "LOCAL_RANK" in os.environ:
        return None
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", *argv]


def relaunch(command: list[str]) -> int:
    """Run ``command`` (from :func:`torchrun_command`) and return its exit status. The
    processes share this stage's lock, and torchrun dies with this process (its workers, in
    a session of their own, die with torchrun)."""
    share_stage_lock()
    return subprocess.run(command, check=False, preexec_fn=exit_with_parent).returncode


def main_process() -> bool:
    """Whether this is the process that writes: the only one, or torchrun's rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def share_stage_lock() -> None:
    """Let the workers this process starts hold its stage's lock too (they take it shared)."""
    if _lock is not None:
        fcntl.flock(_lock, fcntl.LOCK_SH)


def run_stage(main: Callable[[], None], stage: str | None = None) -> None:
    """Run a stage's (or a command's) main with logging; a stage (``stage``: its name) holds
    the lock of its outputs while it runs (:func:`lock_stage`).

    A :class:`~componentx.errors.UserError` exits 1 with its one line
    (``COMPONENTX_DEBUG=1`` shows the traceback); any other exception is a bug and keeps its
    traceback.
    """
    setup_logging()
    try:
        if "LOCAL_RANK" in os.environ:  # a worker process of torchrun's: dies with it
            exit_with_parent()
        if stage is not None:
            lock_stage(stage, shared="LOCAL_RANK" in os.environ)
        main()
    except UserError as error:
        if os.environ.get("COMPONENTX_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
