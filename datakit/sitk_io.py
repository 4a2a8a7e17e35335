"""Reading 2D / 2D+t images with SimpleITK, refusing incomplete files.

SimpleITK reads a truncated ``.nii.gz`` without complaint (the missing voxels come back as zeros)
and reports a truncated ``.raw`` as "No such file or directory". So before decoding we check,
cheaply, that the file holds all the bytes its header promises: for MetaImage, the size of the
data file; for NIfTI, the uncompressed size in the gzip trailer (a full decompression only when the
trailer disagrees, e.g. a multi-member gzip file).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from datakit.errors import DatakitError

MET_SIZES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
             "MET_ULONG": 8, "MET_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def read_image(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Array in SimpleITK order ((T,) H, W) and spacing in the same (numpy) axis order, in mm."""
    import SimpleITK as sitk

    if not path.is_file():
        raise DatakitError("file not found", path)
    name = path.name.lower()
    if name.endswith(".mhd") or name.endswith(".mha"):
        check_metaimage(path)
    elif name.endswith(".nii") or name.endswith(".nii.gz"):
        check_nifti(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise DatakitError(f"SimpleITK cannot read it ({reason[:200]})", path) from None
    spacing = tuple(float(s) for s in reversed(img.GetSpacing()))
    return sitk.GetArrayFromImage(img), spacing


def _metaimage_header(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("latin-1").strip()
            key, sep, value = line.partition("=")
            if not sep:
                continue
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":  # the last header field; binary data may follow
                break
    return fields


def check_metaimage(path: Path) -> None:
    """The data file of an ``.mhd`` exists and holds every voxel (uncompressed data only)."""
    h = _metaimage_header(path)
    try:
        dims = [int(x) for x in h["DimSize"].split()]
        size = MET_SIZES[h["ElementType"]] * int(h.get("ElementNumberOfChannels", "1"))
        data = h["ElementDataFile"]
    except (KeyError, ValueError):
        raise DatakitError("not a MetaImage header (DimSize, ElementType, ElementDataFile needed)", path) \
            from None
    if h.get("CompressedData", "False").lower() == "true" or data in ("LIST",) or "%" in data:
        return  # compressed or multi-file data: SimpleITK's own checks apply
    expected = int(np.prod(dims)) * size
    if data == "LOCAL":
        return
    data_path = path.parent / data
    if not data_path.is_file():
        raise DatakitError(f"its data file {data} is missing", path)
    actual = data_path.stat().st_size - int(h.get("HeaderSize", "0") or 0)
    if actual < expected:
        raise DatakitError(f"truncated: {actual} bytes of voxel data, the header {path.name} "
                           f"promises {expected}", data_path)


def _nifti_data_end(head: bytes, path: Path) -> int:
    """vox_offset + voxel bytes, from a NIfTI-1 or NIfTI-2 header."""
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
    n = int(np.prod([max(int(d), 1) for d in dims[1:1 + max(0, min(int(dims[0]), 7))]]))
    return max(offset, hdr_size + 4 if hdr_size == 348 else hdr_size) + n * bitpix // 8


def check_nifti(path: Path) -> None:
    """The file holds every voxel its header promises (``.nii.gz``: intact gzip stream)."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                head = f.read(540)
            expected = _nifti_data_end(head, path)
            with open(path, "rb") as f:
                f.seek(-4, 2)
                trailer = struct.unpack("<I", f.read(4))[0]
            if trailer != expected % 2**32 and _gunzip_size(path) < expected:
                raise DatakitError(f"truncated: the gzip stream ends before the {expected} bytes "
                                   f"its header promises", path)
        else:
            with open(path, "rb") as f:
                head = f.read(540)
            expected = _nifti_data_end(head, path)
            if path.stat().st_size < expected:
                raise DatakitError(f"truncated: {path.stat().st_size} bytes, the header promises {expected}",
                                   path)
    except EOFError:
        raise DatakitError("truncated: the gzip stream ends early (an incomplete download or copy?)",
                           path) from None
    except (OSError, zlib.error, struct.error) as e:
        raise DatakitError(f"cannot read it as NIfTI ({e})", path) from None


def _gunzip_size(path: Path) -> int:
    """Uncompressed size; a truncated or corrupt stream raises (EOFError, zlib.error)."""
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total
