"""Reading with SimpleITK while refusing incomplete files (SimpleITK alone would not)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from datakit.errors import DatakitError
from datakit.io.nifti_header import check_nifti
from datakit.io.sitk import read_image


def _write(path: Path, shape=(3, 40, 30)) -> np.ndarray:
    a = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((0.6, 0.3, 1.0))
    sitk.WriteImage(img, str(path))
    return a


def test_read_image_order_and_spacing(tmp_path: Path) -> None:
    a = _write(tmp_path / "s.nii.gz")
    arr, spacing = read_image(tmp_path / "s.nii.gz")
    assert np.array_equal(arr, a) and spacing == pytest.approx((1.0, 0.3, 0.6))  # numpy axis order


def test_multi_member_gzip_is_complete(tmp_path: Path) -> None:
    """The gzip trailer holds only the last member's size: a full check must then accept it."""
    _write(tmp_path / "s.nii.gz")
    raw = gzip.decompress((tmp_path / "s.nii.gz").read_bytes())
    (tmp_path / "m.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    check_nifti(tmp_path / "m.nii.gz")
    (tmp_path / "t.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:-10]))
    with pytest.raises(DatakitError, match="truncated"):
        check_nifti(tmp_path / "t.nii.gz")


def test_uncompressed_nifti_and_garbage(tmp_path: Path) -> None:
    _write(tmp_path / "s.nii")
    data = (tmp_path / "s.nii").read_bytes()
    (tmp_path / "s.nii").write_bytes(data[:-100])
    with pytest.raises(DatakitError, match="truncated"):
        read_image(tmp_path / "s.nii")
    (tmp_path / "g.nii.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(DatakitError, match="cannot read it as NIfTI") as e:
        read_image(tmp_path / "g.nii.gz")
    assert e.value.where == str(tmp_path / "g.nii.gz")


def test_metaimage_data_file(tmp_path: Path) -> None:
    _write(tmp_path / "s.mhd")
    (tmp_path / "s.raw").rename(tmp_path / "elsewhere.raw")
    with pytest.raises(DatakitError, match="its data file s.raw is missing") as e:
        read_image(tmp_path / "s.mhd")
    assert e.value.where == str(tmp_path / "s.mhd")
    with pytest.raises(DatakitError, match="file not found"):
        read_image(tmp_path / "absent.mhd")
