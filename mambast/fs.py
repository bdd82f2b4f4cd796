"""Writing files safely: every writer of the package goes through `atomic_write` (temp file beside the target,
fsync, rename), so a crash, a full disk or Ctrl-C never leaves a half-written file under the final name, and
an error while writing is one line (`UserError`) naming the path."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import UserError

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a parent of this path is a file, not a folder",
    errno.EEXIST: "exists and is not a folder",
    errno.ENOENT: "parent folder does not exist",
    errno.EINVAL: "a name the file system refuses",
}


class WriteError(UserError):
    """An output that could not be written (folder, permissions, disk full, name refused): one line."""


def describe_os_error(e: OSError) -> str:
    """A short reason for an OSError (errno-based, falling back to its message)."""
    return _REASONS.get(e.errno, (e.strerror or str(e)).splitlines()[0][:120])


def ensure_dir(path: str | Path) -> Path:
    """Create `path` (and parents) as a folder; WriteError with one line when that is impossible."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise WriteError(f"{path}: exists and is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"{path}: cannot create this folder ({describe_os_error(e)})") from None
    return path


def temp_path(path: Path) -> Path:
    """The hidden temp name `atomic_write` uses beside `path` (`.NAME.PID.tmp`)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temp_files(folder: str | Path, name: str = "*", recursive: bool = False) -> int:
    """Delete the temp files (`temp_path`: `.NAME.PID.tmp`) that a killed writer (SIGKILL, power loss) left
    beside the files named `name` (a glob pattern; escape a literal name with `glob.escape`) in `folder`, and
    below it if `recursive`; only those whose process is gone (a live writer's are kept). -> how many."""
    folder = Path(folder)
    removed = 0
    for tmp in (folder.rglob if recursive else folder.glob)(f".{name}.*.tmp"):
        pid = tmp.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if pid.isdigit() and tmp.is_file() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (on this machine; one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """`with atomic_open(p) as f: f.write(...)`: the data appears at `p` only when the block ends without
    error (fsynced, then renamed over `p`); on any error the temp file is removed and an OSError becomes a
    one-line WriteError naming `p`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"{path}: cannot write ({describe_os_error(e)})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a binary file object, then publish it atomically at `path` (see `atomic_open`).

    Exceptions from `write` other than OSError propagate unchanged (after the temp file is removed); a
    RuntimeError from a writer (torch.save reports a full disk that way) becomes a WriteError too.
    torch.save, PIL's Image.save (give `format=`) and numpy all accept the file object.
    """
    path = Path(path)
    with atomic_open(path) as f:
        try:
            write(f)
        except RuntimeError as e:  # torch.save reports a full disk as RuntimeError("[enforce fail ...")
            raise OSError(errno.ENOSPC if "write" in str(e).lower() else errno.EIO, str(e)) from None
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every OS/file system lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
