"""Unity phantoms (five videos, small frames) and the converted store (helpers: tests/unity/helpers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from datakit.synth.unity import write_unity_phantoms
from tests.helpers import tree_digest
from tests.unity.helpers import convert


@pytest.fixture(scope="session")
def unity_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five phantom videos of two frames (3 train, 1 tune, 1 ival), read-only: copy to modify."""
    root = tmp_path_factory.mktemp("unity") / "unity"
    write_unity_phantoms(root, videos=5, frames=2, seed=3, shape=(120, 160))
    return root


@pytest.fixture
def unity_copy(unity_phantoms: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "unity"
    shutil.copytree(unity_phantoms, dst)
    return dst


@pytest.fixture(scope="session")
def unity_store(unity_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ustore") / "unity.h5"
    before = tree_digest(unity_phantoms)
    res = convert(unity_phantoms, out, "--size", "96")
    assert res.exit_code == 0, res.output
    assert tree_digest(unity_phantoms) == before  # sources are only read
    return out


