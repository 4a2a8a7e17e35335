"""Provenance: a store records the versions of datakit and its libraries, and the git commit of the
checkout that wrote it (an installed wheel records none: tests/test_wheel.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import h5py
import nibabel
import numpy as np
import pytest

import datakit
from datakit.provenance import checkout_root, provenance
from datakit.store import validate_store
from tests.helpers import REPO


def test_store_records_versions_and_commit(acdc_store: Path):
    with h5py.File(acdc_store, "r") as f:
        p = json.loads(f.attrs["provenance"])
    assert p["datakit"] == datakit.__version__
    assert p["numpy"] == np.__version__ and p["h5py"] == h5py.__version__ and p["nibabel"] == nibabel.__version__
    assert p["hdf5"] == h5py.version.hdf5_version
    for lib in ("SimpleITK", "torch", "python"):
        assert isinstance(p[lib], str) and p[lib][0].isdigit(), (lib, p[lib])
    if (REPO / ".git").exists():  # HEAD when the store was written: HEAD now, or before it if one committed since
        assert re.fullmatch(r"[0-9a-f]{40}", p["git_commit"]) and isinstance(p["git_dirty"], bool), p
        ancestor = subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", p["git_commit"], "HEAD"])
        assert ancestor.returncode == 0, p["git_commit"]
    assert validate_store(acdc_store) == []  # an extension, not a violation


def test_no_commit_outside_a_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import datakit.provenance as prov

    assert checkout_root() in (REPO, None)
    fake = tmp_path / "site-packages" / "datakit" / "__init__.py"
    monkeypatch.setattr(datakit, "__file__", str(fake))
    prov.git_state.cache_clear()
    try:
        p = provenance()
        assert p["git_commit"] is None and p["git_dirty"] is None and p["datakit"] == datakit.__version__
    finally:
        prov.git_state.cache_clear()


def test_info_shows_the_provenance(acdc_store: Path):
    from typer.testing import CliRunner

    from datakit.cli import app

    with h5py.File(acdc_store, "r") as f:
        p = json.loads(f.attrs["provenance"])
    out = CliRunner().invoke(app, ["info", str(acdc_store)]).output
    assert f"  software  datakit {datakit.__version__}, numpy {np.__version__}, h5py {h5py.__version__}" in out
    if p["git_commit"]:
        assert f"; git {p['git_commit'][:10]}" in out
    d = json.loads(CliRunner().invoke(app, ["info", str(acdc_store), "--json"]).output)
    assert d["provenance"] == p

