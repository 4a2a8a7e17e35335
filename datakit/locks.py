"""One writer per output: an exclusive lock held for a whole command.

>>> with exclusive_lock(out, "store"):
...     ...  # check, write the temporary, put it in place

The lock is a non-blocking ``flock`` on ``<folder>/.<name>.lock`` beside the output (a store, a run
directory, an export folder), which holds the holder's PID. A second writer is refused at once, with a
DatakitError naming the output and that PID; nobody waits. The lock file is removed on release, after
success or an error. A holder killed outright (``kill -9``, a power cut) leaves its lock file, but the
kernel drops the lock with the process: the next writer takes it and removes the file.

Details that keep it correct:
- the holder unlinks the file while still holding it, so a process that opened the old file just
  before takes a lock on an unlinked file: after locking, the path is checked to still name the
  locked file (device and inode), else it starts again;
- the descriptor is closed in forked children (``os.register_at_fork``) and on exec (``O_CLOEXEC``): a
  worker process that outlives a killed holder (a data-loader worker) never keeps the lock;
- a symbolic link planted at the lock file's name is not followed (refused, named);
- where the file system has no ``flock`` (some network file systems), the command runs unlocked;
  outputs are still put in place only if absent unless ``--overwrite`` is given
  (:func:`datakit.safe_io.publish`).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datakit.errors import DatakitError

try:
    import fcntl
except ImportError:  # not POSIX: no flock, commands run unlocked
    fcntl = None  # type: ignore[assignment]

_HELD: set[int] = set()  # descriptors of the locks this process holds
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def _close_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target``: ``<folder>/.<name>.lock``, beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextmanager
def exclusive_lock(target: str | Path, what: str, option: str = "--out") -> Iterator[Path]:
    """Hold the exclusive lock of ``target`` (a file or folder, existing or not) for the ``with`` block;
    yields the lock file's path. Refused at once, naming ``target`` and the holder's PID, while another
    process holds it: ``<target>: this <what> is being written by another process (PID 1234); wait for
    it or choose another <option>``. The folder of ``target`` must exist. Not re-entrant: a second
    ``exclusive_lock`` of the same target in this process is refused too (with this process's PID)."""
    target = Path(target)
    path = lock_path(target)
    fd = _acquire(path, target, what, option)
    owner = os.getpid()  # a forked child that leaves the block has no lock to release (closed at fork)
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same; a refused writer is told "PID unknown"
            pass
        yield path
    finally:
        if os.getpid() == owner:
            _release(path, fd)


def _acquire(path: Path, target: Path, what: str, option: str) -> int:
    for _ in range(100):
        fd = _open(path)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DatakitError(f"this {what} is being written by another process ({holder}); wait for it or "
                               f"choose another {option}", target) from None
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                os.close(fd)
                raise DatakitError(f"cannot lock {path.name} ({e.strerror or e})", path.parent) from None
        if _names(path, fd):
            _HELD.add(fd)
            return fd
        os.close(fd)  # released and removed by its holder meanwhile: lock the file now at that name
    raise DatakitError(f"cannot lock {path.name}: it is replaced faster than it can be locked", path.parent)


def _open(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        raise DatakitError("output folder does not exist", path.parent) from None
    except NotADirectoryError:
        raise DatakitError("is not a folder", path.parent) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DatakitError("is a symbolic link; a lock file is never followed: remove it", path) from None
        raise DatakitError(f"cannot create the lock file {path.name} ({e.strerror or e})", path.parent) from None


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(fd: int) -> str:
    """``PID 1234`` from the lock file; the holder writes it just after locking, so an empty file is
    read again for a moment."""
    deadline = time.monotonic() + 0.5
    while True:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        if text.isdigit():
            return f"PID {text}"
        if time.monotonic() > deadline:
            return "PID unknown"
        time.sleep(0.01)


def _release(path: Path, fd: int) -> None:
    """Remove the lock file while still holding it (a process that opened it meanwhile then finds it
    gone and starts again), then unlock by closing."""
    try:
        if _names(path, fd):
            path.unlink()
    except OSError:
        pass
    finally:
        _HELD.discard(fd)
        os.close(fd)
