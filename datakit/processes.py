"""Worker processes that die with their parent, even when it is killed outright (``kill -9``): no worker
lingers holding files, a lock or memory after the command that started it is gone."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """In a worker: ask the kernel to SIGKILL this process when its parent dies (Linux, glibc), and exit
    at once if the parent ``parent`` (its PID, read before forking) is already gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:  # not glibc: the parent's shutdown still ends the workers
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
