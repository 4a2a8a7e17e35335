"""load_nifti's zero-copy fast path must read what nibabel reads, and name the file when it cannot."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.io.nifti import load_nifti


def _volume(dtype: str) -> np.ndarray:
    return (np.arange(5 * 6 * 3) % 17).reshape(5, 6, 3).astype(dtype)


def _affine() -> np.ndarray:
    return np.array([[1.4, 0, 0, -10], [0, 1.6, 0, 5], [0, 0, 8.0, 2], [0, 0, 0, 1]])


def _assert_same_as_nibabel(path: Path, same_dtype: bool = True) -> None:
    ref = nib.load(path)
    got = load_nifti(path)
    np.testing.assert_array_equal(got.data, np.asarray(ref.dataobj))
    assert got.data.dtype == np.asarray(ref.dataobj).dtype or not same_dtype
    np.testing.assert_allclose(got.affine, ref.affine)
    assert got.zooms == tuple(float(z) for z in ref.header.get_zooms())


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_plain_volume(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"v{suffix}"
    nib.save(nib.Nifti1Image(_volume("<i2"), _affine()), path)
    _assert_same_as_nibabel(path)


def test_big_endian_data(tmp_path: Path) -> None:
    path = tmp_path / "be.nii.gz"
    img = nib.Nifti1Image(_volume(">f4"), _affine())
    img.set_data_dtype(">f4")
    nib.save(img, path)
    _assert_same_as_nibabel(path)
    assert load_nifti(path).data[1, 2, 0] == _volume("f4")[1, 2, 0]


def test_scaled_data(tmp_path: Path) -> None:
    """scl_slope / scl_inter apply, as nibabel applies them (in float32, not nibabel's float64:
    every source works in float32)."""
    path = tmp_path / "scaled.nii.gz"
    img = nib.Nifti1Image(_volume("<i2"), _affine())
    img.header.set_slope_inter(0.5, -3.0)
    nib.save(img, path)
    _assert_same_as_nibabel(path, same_dtype=False)
    assert load_nifti(path).data.dtype == np.float32
    assert load_nifti(path).data[0, 0, 1] == pytest.approx(_volume("f4")[0, 0, 1] * 0.5 - 3.0)


def test_nifti2_goes_through_nibabel(tmp_path: Path) -> None:
    path = tmp_path / "n2.nii.gz"
    nib.save(nib.Nifti2Image(_volume("<f4"), _affine()), path)
    _assert_same_as_nibabel(path)


def test_unreadable_inputs_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "frame.nii.gz"
    folder.mkdir()  # a folder where a file should be
    with pytest.raises(DatakitError, match="is a folder, not a regular file") as e:
        load_nifti(folder)
    assert e.value.where == str(folder)
    short = tmp_path / "short.nii"
    short.write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 100)
    with pytest.raises(DatakitError, match="shorter than a NIfTI header") as e:
        load_nifti(short)
    assert e.value.where == str(short)
