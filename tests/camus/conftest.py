"""CAMUS phantoms (both releases, coarse pixels for speed), read-only or copied (helpers: tests/camus/helpers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROW_SPACING = 1.0  # mm: about 140 x 100 pixel images, quick to write and convert


@pytest.fixture(scope="session")
def camus_nifti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five NIfTI-release phantom patients (read-only: copy to modify)."""
    from datakit.synth.camus import write_camus_phantoms

    root = tmp_path_factory.mktemp("camus_nifti") / "CAMUS"
    write_camus_phantoms(root, patients=5, release="nifti", seed=3, row_spacing=ROW_SPACING)
    return root


@pytest.fixture(scope="session")
def camus_mhd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six MHD-release phantom patients, the last one in testing/ without ground truth (read-only)."""
    from datakit.synth.camus import write_camus_phantoms

    root = tmp_path_factory.mktemp("camus_mhd") / "CAMUS_mhd"
    write_camus_phantoms(root, patients=6, release="mhd", seed=4, row_spacing=ROW_SPACING, testing=1)
    return root


@pytest.fixture
def nifti_copy(camus_nifti: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "CAMUS"
    shutil.copytree(camus_nifti, dst)
    return dst


@pytest.fixture
def mhd_copy(camus_mhd: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "CAMUS_mhd"
    shutil.copytree(camus_mhd, dst)
    return dst
