"""Guards every reader shares against hostile or broken input (README "Bad input").

- only regular files are opened (a FIFO in place of a file would block forever, a device never ends);
- decoded sizes are capped: a small file whose header promises gigabytes is refused before anything
  is allocated;
- voxel / pixel spacings outside a sane range and NaN / infinite voxels are refused, named;
- ``OSError`` from writing becomes a one-line error naming the path (disk full included);
- a single-file output (PNG, JSON, checkpoint) is written through :func:`replace_file`: a temporary
  with a unique name beside it, renamed into place when complete; without ``--overwrite`` put in place
  only if the name is still free (:func:`publish`, also used for stores).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from datakit.errors import DatakitError

MAX_DECODED_BYTES = 2 << 30  # one decoded image or volume; the largest real ones are tens of MB
SPACING_RANGE_MM = (1e-3, 1e2)  # a pixel or slice spacing outside this is a broken header, not a scanner
NO_SPACE = "no space left on device"


def regular_file(path: Path, what: str = "file") -> os.stat_result:
    """``stat`` of ``path`` (symbolic links followed) if it is a regular file, else a DatakitError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatakitError(f"{what} not found", path) from None
    except (OSError, ValueError) as e:
        raise DatakitError(f"cannot read {what} ({getattr(e, 'strerror', None) or e})", path) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
            "a device or socket"
        raise DatakitError(f"is {kind}, not a regular file; only regular files are read", path)
    return st


def read_bytes(path: Path, what: str = "file", limit: int = MAX_DECODED_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    st = regular_file(path, what)
    if st.st_size > limit:
        raise DatakitError(f"{st.st_size} bytes, more than the {limit >> 20} MB a {what} may hold", path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DatakitError(f"cannot read {what} ({e.strerror or e})", path) from None


def read_text(path: Path, what: str = "file", encoding: str = "utf-8", limit: int = MAX_DECODED_BYTES) -> str:
    raw = read_bytes(path, what, limit)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise DatakitError(f"{what} is not {encoding.split('-sig')[0].upper()} text ({e})", path) from None


def read_lines(path: Path, what: str = "list file") -> list[str]:
    """The stripped, non-empty lines of a regular UTF-8 text file (a split list: one id or name a line)."""
    return [line.strip() for line in read_text(path, what, encoding="utf-8-sig").splitlines() if line.strip()]


def read_json(path: Path, what: str = "JSON file") -> object:
    """A regular file of UTF-8 JSON; invalid or absurdly nested JSON is a DatakitError naming it."""
    import json

    text = read_text(path, what)
    try:
        return json.loads(text)
    except ValueError as e:
        raise DatakitError(f"{what} is not valid JSON ({e})", path) from None
    except RecursionError:
        raise DatakitError(f"{what} is nested too deeply; refused", path) from None


def check_decoded_size(shape: tuple[int, ...], itemsize: int, path: Path, limit: int = MAX_DECODED_BYTES) -> int:
    """Bytes that ``shape`` x ``itemsize`` decode to; refused above ``limit`` (before allocating)."""
    if any(int(d) < 0 for d in shape):
        raise DatakitError(f"negative dimension in the header's shape {tuple(shape)}", path)
    n = int(itemsize)
    for d in shape:
        n *= int(d)
    if n > limit:
        raise DatakitError(f"the header promises {tuple(int(d) for d in shape)} = {n} bytes decoded, more than "
                           f"the {limit >> 20} MB limit for one image", path)
    return n


def check_spacing(values: tuple[float, ...] | list[float], path: Path, what: str = "pixel spacing") -> None:
    """Every spacing finite and within :data:`SPACING_RANGE_MM`."""
    lo, hi = SPACING_RANGE_MM
    vals = [float(v) for v in values]
    if not all(np.isfinite(vals)) or min(vals) < lo or max(vals) > hi:
        raise DatakitError(f"{what} {tuple(round(v, 6) for v in vals)} mm in the header is outside "
                           f"{lo:g}-{hi:g} mm (a broken header?)", path)


def check_finite(a: np.ndarray, path: Path) -> None:
    """Refuse NaN / infinite voxels (floating-point data only; one reduction when all are finite)."""
    if a.dtype.kind not in "fc" or a.size == 0:
        return
    if np.isfinite(a.min()) and np.isfinite(a.max()):
        return
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    raise DatakitError(f"{bad} voxel(s) are NaN or infinite; refused (fix the file or mask them)", path)


def is_no_space(e: BaseException) -> bool:
    """ENOSPC, also as HDF5 reports it (a RuntimeError "... file write failed ... errno = 28 ...")."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    return isinstance(e, (OSError, RuntimeError)) and ("No space left on device" in str(e) or "errno = 28" in str(e))


def os_error(e: OSError | RuntimeError, where: str | Path | None) -> DatakitError:
    """An ``OSError`` met while writing, as the one-line error naming ``where``."""
    if is_no_space(e):
        return DatakitError(NO_SPACE, where)
    return DatakitError(f"cannot write ({getattr(e, 'strerror', None) or e})", where)


def temporary_name(path: Path) -> str:
    """``.<name>.<pid>-<random>.tmp``: hidden, unique per call (two runs, or two calls of one run, never
    share one), and with the writer's PID, by which ``remove_stale_temporaries`` recognises a dead run's."""
    return f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by runs that died (killed, power cut): their writer's
    PID is in the name and no longer alive. A live run's temporary is never touched."""
    removed = []
    prefix = f".{path.name}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for p in candidates:
        pid_text = p.name[len(prefix):-len(".tmp")].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        try:
            if p.is_dir() and not p.is_symlink():  # an export's temporary folder
                import shutil

                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's live process (or an absurd number): leave it
    return True


@contextmanager
def replace_file(path: Path, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Write the file ``path`` through a temporary beside it, created exclusively under a unique name
    (:func:`temporary_name`, ordinary permissions), and renamed onto ``path`` once the block ends.

    >>> with replace_file(out) as f:
    ...     fig.savefig(f, format="png")

    On any exception (disk full, Ctrl-C, a failed render) the temporary is removed and a previous
    ``path`` is untouched (a run killed outright leaves its temporary, removed by the next call for the
    same ``path``); an ``OSError`` becomes the one-line error naming ``path``. With
    ``overwrite=False`` the file is put in place only if ``path`` is still free (a hard link, atomic),
    so a concurrent run that wrote it meanwhile is refused, not silently replaced.
    """
    path = Path(path)
    remove_stale_temporaries(path)  # those of runs that died (kill -9): their PID is dead
    made: list[Path] = []  # the temporary, recorded before it exists: a signal at any point leaves none
    try:
        f = _exclusive_temporary(path, made)
        with f:
            yield f
        publish(made[-1], path, overwrite)
    except OSError as e:
        raise os_error(e, path) from None
    finally:
        for tmp in made:
            tmp.unlink(missing_ok=True)


def write_file(path: Path, data: bytes | bytearray | memoryview | str, overwrite: bool = True) -> Path:
    """``data`` (text as UTF-8) written to ``path`` through :func:`replace_file`."""
    with replace_file(path, overwrite) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _exclusive_temporary(path: Path, made: list[Path]) -> BinaryIO:
    """Create a new temporary beside ``path``; its name is appended to ``made`` BEFORE it is created
    (names are unique to this process: an existing one is never another's), so the caller's clean-up
    removes it even when a signal lands between the creation and the caller's ``try``."""
    for _ in range(100):
        tmp = path.parent / temporary_name(path)
        made.append(tmp)
        try:
            return open(tmp, "xb")  # noqa: SIM115 - closed by replace_file
        except FileExistsError:
            made.pop()  # taken by an earlier call of this process (the random part repeated): not ours
            continue
        except OSError as e:  # no folder, read-only, no permission, full
            raise os_error(e, path) from None
    raise DatakitError("cannot create a temporary file (100 names taken)", path.parent)


WRITTEN_MEANWHILE = "already exists (written meanwhile by another run?); pass --overwrite to replace it"


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Put the complete file ``tmp`` in place at ``path``. With ``overwrite``, an atomic rename over
    whatever is there. Without, only if ``path`` is still free: a hard link, which fails if anything
    appeared there meanwhile (refused, named: never replaced); ``tmp`` then remains, for the caller to
    remove. On a file system without hard links: checked, then renamed."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists, whoever made it
    except FileExistsError:
        raise DatakitError(WRITTEN_MEANWHILE, path) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise DatakitError("already exists; pass --overwrite to replace it", path) from None
        os.replace(tmp, path)


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (device and inode: a hard link or a symbolic link to it is
    the same file under another name); False when either does not exist."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
