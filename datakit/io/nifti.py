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

from datakit.deflate import zlib as _zlib  # ISA-L's when installed: inflates several times faster
from datakit.errors import DatakitError
from datakit.io.nifti_header import TRAILING_SLACK, data_end
from datakit.safe_io import check_decoded_size, check_finite, read_bytes

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
    """Inflate a .nii.gz, never past what its header promises (plus a little slack): a small file
    that inflates to gigabytes of trailing data is refused after the header, not after decoding it."""
    try:
        d = _zlib.decompressobj(_GZIP)
        out = d.decompress(raw, 1024)
        if len(out) >= 4 and not d.eof:
            expected = data_end(out, path)
            out += d.decompress(d.unconsumed_tail, expected + TRAILING_SLACK - len(out))
            if not d.eof and d.unconsumed_tail:
                if d.decompress(d.unconsumed_tail, 1):
                    raise DatakitError(f"the gzip stream holds more than the {expected} bytes its header "
                                       f"promises; refused", path)
        if not d.eof:
            raise DatakitError("truncated gzip stream (the file ends before its data does)", path)
        return out
    except (_zlib.error, ValueError) as e:
        raise DatakitError(f"unreadable NIfTI (not a valid gzip stream: {e})", path) from None


def load_nifti(path: Path) -> Volume:
    """Decode a .nii or .nii.gz fully; raise DatakitError naming the file if unreadable."""
    raw = read_bytes(path, "NIfTI file")  # regular files only
    if path.name.endswith(".gz"):
        raw = _inflate(raw, path)
    try:
        if len(raw) < 348:
            raise ValueError(f"only {len(raw)} bytes, shorter than a NIfTI header")
        sizeof_hdr = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
        if 348 in sizeof_hdr and raw[344:347] == b"n+1":
            vol = _from_nifti1_bytes(raw, path)
        else:
            need = data_end(raw, path)  # NIfTI-2 and others: the promise checked before nibabel allocates
            if len(raw) < need:
                raise DatakitError(f"truncated: {len(raw)} bytes, the header promises {need}", path)
            img = (nib.Nifti2Image if 540 in sizeof_hdr else nib.Nifti1Image).from_bytes(raw)
            vol = Volume(np.asarray(img.dataobj), img.affine, _zooms_as_written(raw, img.header))
    except DatakitError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise DatakitError(f"unreadable NIfTI ({str(e) or type(e).__name__})", path) from None
    if vol.data.dtype.kind == "c":
        raise DatakitError(f"complex voxels ({vol.data.dtype}); refused (the imaginary part would be lost)", path)
    check_finite(vol.data, path)
    return vol


def _from_nifti1_bytes(raw: bytes, path: Path) -> Volume:
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=True)
    shape = header.get_data_shape()
    dtype = header.get_data_dtype()
    offset = int(header.get_data_offset())
    count = check_decoded_size(shape, dtype.itemsize, path) // dtype.itemsize if shape else 0
    need = offset + count * dtype.itemsize
    if len(raw) < need:
        raise DatakitError(f"truncated: {len(raw)} bytes, the header promises {need}", path)
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        data = data * np.float32(slope) + np.float32(inter or 0)
    return Volume(data, header.get_best_affine(), _zooms_as_written(raw, header))


def _zooms_as_written(raw: bytes, header: nib.Nifti1Header) -> tuple[float, ...]:
    """The header's zooms, except that a pixdim of 0 stays 0: nibabel's checks quietly make it 1, and
    a spacing the file does not have must be refused, not invented."""
    zooms = [float(z) for z in header.get_zooms()]
    unchecked = type(header)(raw[: header.sizeof_hdr], check=False)
    written = unchecked["pixdim"][1:1 + len(zooms)]
    return tuple(0.0 if float(w) == 0 else z for z, w in zip(zooms, written, strict=False))
