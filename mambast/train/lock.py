"""One training process per run folder: an advisory lock on RUN_DIR/.lock, released when the process ends.

Two processes resuming (or starting) the same run would interleave checkpoints and metrics; the second one
now stops at once with a one-line error. The lock is flock(2), so a crashed or killed run never leaves a
stale lock behind. Where fcntl does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError
from ..fs import WriteError, describe_os_error, ensure_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock (creating RUN_DIR) for the duration; UserError if another process holds it.

    A RUN_DIR this call created is removed again if nothing but the lock was written (an early error)."""
    if fcntl is None:
        yield
        return
    created = not run_dir.exists()
    ensure_dir(run_dir)  # one line when it cannot be created (a file in the way, permissions)
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WriteError(f"{run_dir / LOCK_NAME}: cannot write ({describe_os_error(e)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise UserError(f"{run_dir} is being trained by {holder}; wait for it to finish or stop it first") \
                from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:  # failed before writing anything
            (run_dir / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
