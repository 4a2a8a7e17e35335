"""Leave a finished command without tearing the interpreter down.

After a conversion, Python's shutdown frees some 750 modules and everything they hold one object
at a time: 0.1-0.2 s (0.4 s once torch is loaded) spent after the work is done, for memory the
operating system reclaims at once anyway. Like Instagram's servers (``os._exit`` at exit), the
console scripts skip that teardown, after doing everything a normal exit would that matters:
non-daemon threads are waited for, HDF5 files still open are closed (their buffers written),
``atexit`` handlers run (process pools joined, logging flushed), and stdout / stderr are flushed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def run_then_exit(app: Callable[[], object]) -> NoReturn:
    """Run a Typer/Click app in standalone mode and exit the process with its exit code.

    SIGTERM is handled like Ctrl-C (the commands' clean-up runs; exit 143)."""
    from datakit.cli.common import handle_sigterm

    handle_sigterm()
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name is printed escaped, never a traceback
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    try:
        app()
        code: object = 0
    except SystemExit as e:
        code = e.code
    if not isinstance(code, int):  # SystemExit("message") prints the message and means failure
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    from datakit.cli.common import TERMINATED

    if TERMINATED["seen"] and code != 0:  # SIGTERM outside a command's own handling (Click's "Aborted!")
        code = 143
    _finish()
    os._exit(code)


def _finish() -> None:
    for thread in threading.enumerate():  # as the interpreter would: non-daemon threads run to their end
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    h5py = sys.modules.get("h5py")
    if h5py is not None:  # an HDF5 file left open would otherwise lose what HDF5 still buffers
        writer = sys.modules.get("datakit.store.writer")
        unclosable = {o.id for o in getattr(writer, "_UNCLOSABLE", []) if isinstance(o, h5py.h5f.FileID)}
        for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
            if fid.id not in unclosable:  # a write failed on a full disk: HDF5 would crash closing it
                h5py.File(fid).close()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach the reader
            pass
