"""Reading 2D / 2D+t images with SimpleITK, refusing incomplete files.

SimpleITK reads a truncated ``.nii.gz`` without complaint (the missing voxels come back as zeros)
and reports a truncated ``.raw`` as "No such file or directory". So before decoding we check,
cheaply, that the file holds all the bytes its header promises: for MetaImage, the size of the
data file; for NIfTI, the uncompressed size in the gzip trailer (a full decompression only when the
trailer disagrees, e.g. a multi-member gzip file).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from datakit.errors import DatakitError
from datakit.io.nifti_header import check_nifti
from datakit.safe_io import check_decoded_size, check_finite, check_spacing, read_bytes, regular_file

MET_SIZES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
             "MET_ULONG": 8, "MET_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def read_image(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Array in SimpleITK order ((T,) H, W) and spacing in the same (numpy) axis order, in mm."""
    import SimpleITK as sitk

    regular_file(path)  # a FIFO would block SimpleITK forever
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
    check_spacing(spacing[-2:], path)  # in-plane: a sequence's third axis may be time
    if img.GetNumberOfComponentsPerPixel() != 1 or "complex" in img.GetPixelIDTypeAsString():
        raise DatakitError(f"{img.GetPixelIDTypeAsString()} pixels; expected one scalar per pixel", path)
    array = sitk.GetArrayFromImage(img)
    check_finite(array, path)
    if array.dtype.kind == "f" and (name.endswith(".nii") or name.endswith(".nii.gz")):
        # ITK's NIfTI reader turns NaN into 0: the voxels as written are checked by our own decoder
        from datakit.io.nifti import load_nifti

        load_nifti(path)
    return array, spacing


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


def _data_file(path: Path, data: str) -> Path:
    """The ``ElementDataFile`` of ``path``, refused unless it is a plain file name beside the header
    (or below it) that stays there once symbolic links are followed: never read outside SRC."""
    where = f"ElementDataFile = {data}"
    text = data.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise DatakitError(f"{where}: an absolute path; refused (only files beside the header are read)", path)
    parts = text.split("/")
    if ".." in parts:
        raise DatakitError(f"{where}: leaves the header's folder; refused (only files beside the header are read)",
                           path)
    folder = path.parent.resolve()
    target = (folder / text).resolve()
    if not target.is_relative_to(folder):
        raise DatakitError(f"{where}: a symbolic link out of the header's folder; refused (only files beside the "
                           f"header are read)", path)
    return path.parent / text


def check_metaimage(path: Path) -> None:
    """The data file of an ``.mhd`` lies beside it, is a regular file and holds every voxel (compressed:
    inflates to exactly what the header promises)."""
    h = _metaimage_header(path)
    try:
        dims = [int(x) for x in h["DimSize"].split()]
        size = MET_SIZES[h["ElementType"]] * int(h.get("ElementNumberOfChannels", "1"))
        data = h["ElementDataFile"]
    except (KeyError, ValueError):
        raise DatakitError("not a MetaImage header (DimSize, ElementType, ElementDataFile needed)", path) \
            from None
    if not data or data == "LIST" or "%" in data:
        raise DatakitError(f"ElementDataFile = {data}: multi-file data is not supported", path)
    expected = check_decoded_size(tuple(dims), size, path)
    if data == "LOCAL":
        return
    data_path = _data_file(path, data)
    if not data_path.exists():
        raise DatakitError(f"its data file {data} is missing", path)
    st = regular_file(data_path, "data file")
    compressed = h.get("CompressedData", "False").lower() == "true"
    if compressed:
        _check_compressed(data_path, expected, h, path)
        return
    actual = st.st_size - int(h.get("HeaderSize", "0") or 0)
    if actual < expected:
        raise DatakitError(f"truncated: {actual} bytes of voxel data, the header {path.name} "
                           f"promises {expected}", data_path)


def _check_compressed(data_path: Path, expected: int, h: dict[str, str], header: Path) -> None:
    """``CompressedData = True``: the file must be a zlib stream that inflates to exactly ``expected``
    bytes (raw data under a compressed header would decode to garbage)."""
    raw = read_bytes(data_path, "data file")
    d = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header
    try:
        out = len(d.decompress(raw, expected + 1))
    except zlib.error as e:
        raise DatakitError(f"CompressedData = True but its data file {data_path.name} is not a zlib stream ({e})",
                           header) from None
    if out != expected or not d.eof:
        raise DatakitError(f"CompressedData = True: its data file {data_path.name} inflates to "
                           f"{'more than ' if out > expected else ''}{min(out, expected)} bytes, the header "
                           f"promises {expected}", header)
