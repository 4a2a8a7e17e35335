"""What a NIfTI-1 or NIfTI-2 file promises, read from its header without nibabel, and whether the file
holds it: the one place that parses the header for the decoders (:mod:`datakit.io.nifti` inflates
no further than the promise; :mod:`datakit.io.sitk` checks a file before SimpleITK reads it).
Header layouts: https://nifti.nimh.nih.gov/pub/dist/src/niftilib/nifti1.h and
https://nifti.nimh.nih.gov/pub/dist/doc/nifti2.h.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from datakit.errors import DatakitError
from datakit.safe_io import check_decoded_size

TRAILING_SLACK = 1 << 16  # bytes tolerated after the data a header promises (then: refused, not decoded)


def nifti_header_size(head: bytes, path: Path) -> tuple[tuple[int, ...], int, int]:
    """(shape, bytes per voxel, data offset) from a NIfTI-1 or NIfTI-2 header, never allocating."""
    for endian in "<>":
        (hdr_size,) = struct.unpack(endian + "i", head[:4])
        if hdr_size == 348 and len(head) >= 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if hdr_size == 540 and len(head) >= 540:
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        raise DatakitError("not a NIfTI file (bad header size)", path)
    shape = tuple(max(int(d), 1) for d in dims[1:1 + max(0, min(int(dims[0]), 7))])
    return shape, max(int(bitpix), 8) // 8, max(int(offset), hdr_size + 4 if hdr_size == 348 else hdr_size)


def data_end(head: bytes, path: Path) -> int:
    """vox_offset + voxel bytes that a NIfTI-1 / NIfTI-2 header promises; capped before any allocation."""
    shape, itemsize, offset = nifti_header_size(head, path)
    return offset + check_decoded_size(shape, itemsize, path)


def check_nifti(path: Path) -> None:
    """The file holds every voxel its header promises (``.nii.gz``: intact gzip stream)."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                head = f.read(540)
            expected = data_end(head, path)
            with open(path, "rb") as f:
                f.seek(-4, 2)
                trailer = struct.unpack("<I", f.read(4))[0]
            if trailer != expected % 2**32 and _gunzip_size(path, expected) < expected:
                raise DatakitError(f"truncated: the gzip stream ends before the {expected} bytes "
                                   f"its header promises", path)
        else:
            with open(path, "rb") as f:
                head = f.read(540)
            expected = data_end(head, path)
            if path.stat().st_size < expected:
                raise DatakitError(f"truncated: {path.stat().st_size} bytes, the header promises {expected}",
                                   path)
    except EOFError:
        raise DatakitError("truncated: the gzip stream ends early (an incomplete download or copy?)",
                           path) from None
    except (OSError, zlib.error, struct.error) as e:
        raise DatakitError(f"cannot read it as NIfTI ({e})", path) from None


def _gunzip_size(path: Path, expected: int) -> int:
    """Uncompressed size up to ``expected``; a truncated or corrupt stream raises (EOFError, zlib.error),
    one holding more than ``expected`` (+ TRAILING_SLACK) is refused without inflating the rest."""
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
            if total > expected + TRAILING_SLACK:
                raise DatakitError(f"the gzip stream holds more than the {expected} bytes its header promises; "
                                   f"refused", path)
    return total
