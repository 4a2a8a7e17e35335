"""A smaller copy of a store for moving it (e.g. to a GPU machine that only receives 64 MiB):
half-precision images, optionally rounded to fewer mantissa bits, gzip at a high level, and
optionally zero images for samples whose images the receiver will not read.

The copy is a valid store (float16 images are a contract extension, docs/store.md) with the same
samples, metadata and splits; what was changed is recorded in its ``notes``. Written to a
temporary beside ``dst`` and renamed when complete, under ``dst``'s exclusive lock.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from datakit.errors import DatakitError
from datakit.safe_io import publish, remove_stale_temporaries
from datakit.store.chunks import ChunkReader
from datakit.store.contract import json_attr
from datakit.store.info import json_list
from datakit.store.writer import _create_temporary, writing

F16_MANTISSA = 10  # stored mantissa bits of IEEE half precision


def round_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """float16 values rounded (to nearest, ties up) to ``bits`` stored mantissa bits (7: bf16's precision)."""
    h = np.asarray(x, np.float16)
    drop = F16_MANTISSA - bits
    if drop <= 0:
        return h
    u = h.view(np.uint16).astype(np.uint32)
    u = ((u + (1 << (drop - 1))) >> drop) << drop
    return u.astype(np.uint16).view(np.float16)


def pack_store(src: Path, dst: Path, *, mantissa_bits: int = F16_MANTISSA, zero_images: np.ndarray | None = None,
               level: int = 9, why: str = "", overwrite: bool = False) -> dict[str, float]:
    """Write the packed copy of ``src`` to ``dst``; returns sizes in MiB and the largest image change."""
    if not 1 <= mantissa_bits <= F16_MANTISSA:
        raise DatakitError(f"mantissa bits must be 1..{F16_MANTISSA}, not {mantissa_bits}")
    with writing(dst, overwrite):  # the store's exclusive lock, held until the copy is in place
        return _pack(src, dst, mantissa_bits, zero_images, level, why, overwrite)


def _pack(src: Path, dst: Path, mantissa_bits: int, zero_images: np.ndarray | None, level: int, why: str,
          overwrite: bool) -> dict[str, float]:
    remove_stale_temporaries(dst)
    tmp, d = _create_temporary(dst)  # the writers' temporary: unique, PID-named, removed below on failure
    zero = set(int(i) for i in (zero_images if zero_images is not None else []))
    worst = 0.0
    try:
        with d, h5py.File(src, "r") as s:
            for k, v in s.attrs.items():
                d.attrs[k] = json_attr(k, v)  # an empty list stored as an empty array becomes "[]"
            for name, obj in s.items():
                if name == "images":
                    continue
                if isinstance(obj, h5py.Dataset) and obj.ndim >= 2:  # per-sample arrays: recompress
                    per_sample = obj.chunks is not None and obj.chunks[0] == 1  # the contract's layout: keep it
                    out = d.create_dataset(name, data=obj[()], chunks=obj.chunks if per_sample else True,
                                           compression="gzip", compression_opts=level,
                                           shuffle=obj.dtype.itemsize > 1)
                    for k, v in obj.attrs.items():
                        out.attrs[k] = v
                else:
                    s.copy(obj, d, name=name)
            img = s["images"]
            out = d.create_dataset("images", img.shape, np.float16, chunks=(1, *img.shape[1:]), compression="gzip",
                                   compression_opts=level, shuffle=True)
            for k, v in img.attrs.items():
                out.attrs[k] = v
            reader = ChunkReader(img)
            for i in range(img.shape[0]):
                if i in zero:
                    out[i] = 0
                    continue
                x = reader.read(i)
                h = round_mantissa(x, mantissa_bits)
                worst = max(worst, float(np.abs(h.astype(np.float32) - x).max()) if x.size else 0.0)
                out[i] = h
            notes = json_list(s.attrs.get("notes"))
            notes.append(f"packed from {src.name}: images float16 with {mantissa_bits} mantissa bits (largest change "
                         f"{worst:.2g}), gzip {level}" + (f"; images of {len(zero)} samples set to 0" if zero else "")
                         + (f" ({why})" if why else ""))
            d.attrs["notes"] = json.dumps(notes)
        publish(tmp, dst, overwrite)  # without overwrite: only if dst is still free
    finally:
        tmp.unlink(missing_ok=True)
    return {"src_mib": src.stat().st_size / 2**20, "dst_mib": dst.stat().st_size / 2**20, "largest_change": worst}
