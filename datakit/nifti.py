"""NIfTI reading with a fast gzip decoder and errors that name the file.

A single-file NIfTI is a header followed by the raw voxel array at ``vox_offset``. After inflating
the file with ISA-L (several times faster than zlib), the header is parsed by nibabel and the voxels
are viewed in place with ``np.frombuffer``: nibabel's own ``from_bytes`` path copies the data
through file-like wrappers and costs as much as the inflate. Anything unusual (NIfTI-2, pairs of
.hdr/.img files) goes through nibabel unchanged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from datakit.errors import DatakitError

try:  # ISA-L inflates several times faster than zlib
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover
    import zlib as _zlib

_GZIP = 16 + 15  # wbits: a gzip stream


@dataclass
class Volume:
    """Decoded voxels (Fortran order, as nibabel gives them) plus the header facts we use."""

    data: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


def _inflate(raw: bytes, path: Path) -> bytes:
    try:
        d = _zlib.decompressobj(_GZIP)
        out = d.decompress(raw)
        if not d.eof:
            raise DatakitError("truncated gzip stream (the file ends before its data does)", path)
        return out
    except (_zlib.error, ValueError) as e:
        raise DatakitError(f"unreadable NIfTI (not a valid gzip stream: {e})", path) from None


def load_nifti(path: Path) -> Volume:
    """Decode a .nii or .nii.gz fully; raise DatakitError naming the file if unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatakitError("file not found", path) from None
    except OSError as e:
        raise DatakitError(f"cannot read ({e.strerror or e})", path) from None
    if path.name.endswith(".gz"):
        raw = _inflate(raw, path)
    try:
        if len(raw) < 348:
            raise ValueError(f"only {len(raw)} bytes, shorter than a NIfTI header")
        sizeof_hdr = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
        if 348 in sizeof_hdr and raw[344:347] == b"n+1":
            return _from_nifti1_bytes(raw, path)
        img = (nib.Nifti2Image if 540 in sizeof_hdr else nib.Nifti1Image).from_bytes(raw)
        return Volume(np.asarray(img.dataobj), img.affine, tuple(float(z) for z in img.header.get_zooms()))
    except DatakitError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise DatakitError(f"unreadable NIfTI ({str(e) or type(e).__name__})", path) from None


def _from_nifti1_bytes(raw: bytes, path: Path) -> Volume:
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=True)
    shape = header.get_data_shape()
    dtype = header.get_data_dtype()
    offset = int(header.get_data_offset())
    count = int(np.prod(shape)) if shape else 0
    need = offset + count * dtype.itemsize
    if len(raw) < need:
        raise DatakitError(f"truncated: {len(raw)} bytes, the header promises {need}", path)
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        data = data * np.float32(slope) + np.float32(inter or 0)
    return Volume(data, header.get_best_affine(), tuple(float(z) for z in header.get_zooms()))
