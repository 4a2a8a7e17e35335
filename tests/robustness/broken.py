"""Ways to break a file of a real format, one function each (used by the case tables)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np


def fifo(path: Path) -> Path:
    """Replace ``path`` by a FIFO of the same name (reading it would block forever)."""
    path.unlink()
    os.mkfifo(path)
    return path


def edit_cfg(path: Path, key: str, value: str) -> Path:
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(f"{key}:")]
    path.write_text("\n".join([*lines, f"{key}: {value}"]) + "\n")
    return path


def edit_mhd(path: Path, **fields: str) -> Path:
    """Set MetaImage header fields (ElementDataFile stays last, as the format requires)."""
    lines = path.read_text(encoding="latin-1").splitlines()
    keys = [ln.partition("=")[0].strip() for ln in lines]
    for k, v in fields.items():
        if k in keys:
            lines[keys.index(k)] = f"{k} = {v}"
        else:
            lines.insert(len(lines) - 1, f"{k} = {v}")
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def rewrite_nifti(path: Path, data: np.ndarray | None = None, zooms: tuple[float, ...] | None = None) -> Path:
    """Re-save a NIfTI-1 file with new voxels (dtype included) or voxel spacing, same affine otherwise."""
    img = nib.load(path)
    arr = np.asarray(img.dataobj) if data is None else data
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(arr.shape)
    hdr.set_data_dtype(arr.dtype)
    hdr.set_qform(img.affine, 1)
    hdr.set_sform(img.affine, 1)
    if zooms is not None:
        hdr.set_zooms(zooms[: arr.ndim])
    hdr["vox_offset"] = 352
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    # bytes written by hand: nibabel's writer would turn NaN into 0 and scale what it cannot store
    raw = hdr.binaryblock + b"\0" * 4 + np.asarray(arr).tobytes(order="F")
    path.write_bytes(gzip.compress(raw, 1) if path.name.endswith(".gz") else raw)
    return path


def float_voxels(path: Path, value: float, count: int = 3) -> Path:
    data = np.asarray(nib.load(path).dataobj).astype(np.float32)
    data[np.unravel_index(np.arange(count), data.shape)] = value
    return rewrite_nifti(path, data)


def complex_voxels(path: Path) -> Path:
    data = np.asarray(nib.load(path).dataobj).astype(np.complex64)
    return rewrite_nifti(path, data)


def nifti2_promising(path: Path, shape: tuple[int, ...], dtype: type = np.int16) -> Path:
    """A NIfTI-2 file whose header promises ``shape`` voxels but holds (almost) none."""
    img = nib.Nifti2Image(np.zeros((2, 2, 2), dtype), np.eye(4))
    hdr = img.header
    hdr.set_data_shape(shape)
    raw = hdr.binaryblock + b"\0" * 4 + b"\0" * 128  # header, extension flag, a few bytes of "data"
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def gzip_trailing_zeros(path: Path, megabytes: int = 32) -> Path:
    """A valid gzip stream whose content is the NIfTI followed by ``megabytes`` of zeros."""
    raw = gzip.decompress(path.read_bytes())
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    body = c.compress(raw)
    zeros = b"\0" * (1 << 20)
    for _ in range(megabytes):
        body += c.compress(zeros)
    path.write_bytes(body + c.flush())
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header promises width x height 8-bit grey pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def tiff_promising(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A TIFF whose header promises width x height float32 pixels, with one strip of 16 bytes."""
    entries = [  # tag, type, count, value (little-endian baseline TIFF, one strip)
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16), (339, 3, 1, 3),
    ]
    ifd_offset = 8 + 16
    out = b"II*\0" + struct.pack("<I", ifd_offset) + b"\0" * 16
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HHI", tag, typ, count)
        packed += struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += packed
    out += struct.pack("<I", 0)
    path.write_bytes(out)
    return path


def float_tiff(path: Path, values: np.ndarray) -> Path:
    import tifffile

    tifffile.imwrite(path, values)
    return path
