"""Shared fixtures: generated phantoms in exact source layouts (the helpers tests import: tests/helpers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def acdc_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four ACDC phantom patients (no 4D cine: faster), read-only for the tests: copy to modify."""
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path_factory.mktemp("acdc") / "ACDC"
    write_acdc_phantoms(root, patients=4, seed=1, cine=False)
    return root


@pytest.fixture
def acdc_copy(acdc_phantoms: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the ACDC phantoms."""
    dst = tmp_path / "ACDC"
    shutil.copytree(acdc_phantoms, dst)
    return dst


@pytest.fixture(scope="session")
def acdc_store(acdc_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted store of the ACDC phantoms (read-only)."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    out = tmp_path_factory.mktemp("store") / "acdc.h5"
    convert(AcdcSource(acdc_phantoms), ConvertOptions(out=out, workers=1, progress=False))
    return out


@pytest.fixture(scope="session")
def small_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 8 ACDC phantom patients small_store is converted from (read-only): new scans for train predict."""
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path_factory.mktemp("acdc8") / "ACDC"
    write_acdc_phantoms(root, patients=8, seed=3, cine=False)
    return root


@pytest.fixture(scope="session")
def small_store(small_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training's store: 8 phantom patients at 64 x 64, 3 mm pixels (the heart in view), stratified splits."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource
    from datakit.store import validate_store

    out = tmp_path_factory.mktemp("store64") / "acdc64.h5"
    convert(AcdcSource(small_phantoms, spacing=3.0, size=64), ConvertOptions(out=out, workers=1, progress=False),
            log=lambda m: None)
    assert validate_store(out) == []
    return out


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared, busy machine two threads spin-wait on each other (~10x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def savefig_full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib's savefig writes half a PNG, then fails as on a full disk (ENOSPC)."""
    from matplotlib.figure import Figure

    def full_disk(fig: Figure, target: object, **kwargs: object) -> None:
        if isinstance(target, (str, Path)):  # a PNG written in place would now be half a PNG
            Path(target).write_bytes(b"half")
        else:
            target.write(b"half")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
