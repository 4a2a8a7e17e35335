"""What made a file: the versions of datakit and the libraries that shape its numbers, and the git
commit when datakit runs from a checkout. Written into every store (root attr ``provenance``) and
every training run directory (``RUN_DIR/provenance.json``).

A library already imported names its own ``__version__``; others are looked up in the installed
distributions' metadata (``importlib.metadata``), never imported: a conversion does not load torch
just to name its version.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import datakit

# distribution -> module of the libraries whose versions are recorded (None where not installed)
LIBRARIES = {"numpy": "numpy", "h5py": "h5py", "nibabel": "nibabel", "SimpleITK": "SimpleITK", "scipy": "scipy",
             "scikit-image": "skimage", "torch": "torch"}


def _version(dist: str) -> str | None:
    version = getattr(sys.modules.get(LIBRARIES.get(dist, dist)), "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def checkout_root() -> Path | None:
    """The git work tree datakit is imported from, or None (an installed wheel, an sdist)."""
    root = Path(datakit.__file__).resolve().parents[1]
    return root if (root / ".git").exists() else None  # .git: a folder, or a file in a worktree


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout datakit runs from; (None, None) outside one or without git."""
    root = checkout_root()
    if root is None:
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    if head.returncode != 0:
        return None, None
    return head.stdout.strip(), (bool(status.stdout.strip()) if status.returncode == 0 else None)


def provenance() -> dict[str, Any]:
    """``{"datakit", "python", "hdf5", <library>: version or None, ..., "git_commit", "git_dirty"}``."""
    import h5py

    commit, dirty = git_state()
    return {"datakit": datakit.__version__, "python": platform.python_version(),
            "hdf5": h5py.version.hdf5_version, **{name: _version(name) for name in LIBRARIES},
            "git_commit": commit, "git_dirty": dirty}
