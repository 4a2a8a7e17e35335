"""What tests across the suite share (a plain module: tests import it, never a conftest): the repository
root, the real data beside it, and a digest of a folder's files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path to a real dataset in ../shared/data, or skip the test with the reason."""
    p = SHARED_DATA / name
    if not p.is_dir():
        pytest.skip(f"real data {p} is absent (it lives beside the repo, never inside it)")
    return p


def tree_digest(root: Path, mtimes: bool = False) -> str:
    """Hash of every file's name and bytes (and modification time): proves a conversion left its
    source untouched (not even rewritten with the same bytes, with ``mtimes``)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
            if mtimes:
                h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()
