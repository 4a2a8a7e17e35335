"""The robustness suite's generated sources and stores (session-scoped, read-only; each case copies).
The harness every case runs through is tests/robustness/helpers.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


# -- generated sources (session-scoped, read-only; each case copies) -----------------------------------
@pytest.fixture(scope="session")
def acdc_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ACDC patient (ED and ES NIfTI volumes, _gt, Valvano scribbles, Info.cfg)."""
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path_factory.mktemp("rb_acdc") / "ACDC"
    write_acdc_phantoms(root, patients=1, seed=5, cine=False)
    return root


@pytest.fixture(scope="session")
def acdc3(acdc_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three ACDC patients (the phantom patient under three numbers): enough items for a worker pool."""
    root = tmp_path_factory.mktemp("rb_acdc_x3") / "ACDC"
    first = next(acdc_src.rglob("patient001"))
    for n in (1, 2, 3):
        d = root / "training" / f"patient{n:03d}"
        d.mkdir(parents=True)
        for f in first.iterdir():
            shutil.copyfile(f, d / f.name.replace("patient001", f"patient{n:03d}"))
    return root


@pytest.fixture(scope="session")
def camus_mhd_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CAMUS patient of the MHD/RAW release (coarse pixels), with listSubGroups/."""
    from datakit.synth.camus import write_camus_phantoms

    root = tmp_path_factory.mktemp("rb_camus_mhd") / "CAMUS"
    write_camus_phantoms(root, patients=1, release="mhd", seed=5, row_spacing=1.5, testing=0)
    return root


@pytest.fixture(scope="session")
def camus_nifti_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CAMUS patient of the NIfTI release (coarse pixels), with database_split/."""
    from datakit.synth.camus import write_camus_phantoms

    root = tmp_path_factory.mktemp("rb_camus_nii") / "CAMUS"
    write_camus_phantoms(root, patients=1, release="nifti", seed=5, row_spacing=1.5)
    return root


@pytest.fixture(scope="session")
def unity_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Unity videos of one labelled frame each (png-cache/ + labels-all.json)."""
    from datakit.synth.unity import write_unity_phantoms

    root = tmp_path_factory.mktemp("rb_unity") / "unity"
    write_unity_phantoms(root, videos=2, frames=1, seed=5, shape=(60, 80))
    return root


@pytest.fixture(scope="session")
def folder_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An images/ + masks/ folder of three 8-bit PNG pairs (Kvasir-like layout)."""
    from tests.folder_data import write_pairs

    root = tmp_path_factory.mktemp("rb_folder") / "kvasir"
    write_pairs(root, ["a", "b", "c"], size=(24, 32), mask_scale=1)
    return root


@pytest.fixture(scope="session")
def good_store(acdc_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid store (the ACDC phantom at 32 x 32, 6 mm pixels), with train/valid/test splits."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path_factory.mktemp("rb_acdc3") / "ACDC"
    write_acdc_phantoms(root, patients=3, seed=6, cine=False)
    out = tmp_path_factory.mktemp("rb_store") / "good.h5"
    convert(AcdcSource(root, spacing=6.0, size=32), ConvertOptions(out=out, workers=1, progress=False,
                                                                     ratios=(0.34, 0.33, 0.33)),
            log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def checkpoint(good_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A well-formed checkpoint for the good store's classes (untrained, narrow): eval reaches the store."""
    from datakit.store import Store
    from train import checkpoint as ckpt
    from train.model import AttentionUNet

    with Store(good_store) as s:
        classes = s.classes
    model = AttentionUNet(in_channels=1, classes=len(classes), width=4)
    path = tmp_path_factory.mktemp("rb_ckpt") / "good.pt"
    ckpt.save(path, {"step": 0, "method": "pce", "classes": classes, "model_config": model.config,
                     "model": model.state_dict(), "config": {"store": str(good_store)}})
    return path
