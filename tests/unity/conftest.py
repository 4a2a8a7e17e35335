"""Unity phantoms (five videos, small frames), the converted store, and helpers shared by the Unity tests."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from datakit.cli import app
from datakit.synth.unity import write_unity_phantoms
from tests.conftest import tree_digest

runner = CliRunner()
HEX = re.compile(r"^[0-9a-f]{64}$")


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


def convert(src: Path, out: Path, *extra: str):
    return runner.invoke(app, ["splines-to-masks", "unity", str(src), "--out", str(out), "-j", "1", *extra])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".h5", ".tmp") or p.name.endswith(".tmp"))


@pytest.fixture(scope="session")
def unity_store(unity_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ustore") / "unity.h5"
    before = tree_digest(unity_phantoms)
    res = convert(unity_phantoms, out, "--size", "96")
    assert res.exit_code == 0, res.output
    assert tree_digest(unity_phantoms) == before  # sources are only read
    return out


def notes_of(f: h5py.File) -> list[str]:
    raw = f.attrs["notes"]
    return json.loads(raw) if isinstance(raw, str) else list(raw)  # an empty list is stored as an array


def label_instance(entry: dict, label: str) -> dict:
    value = entry["labels"][label]
    return value[0] if isinstance(value, list) else value
