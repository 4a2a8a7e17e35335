"""Fast reads of one sample: the store keeps one sample per chunk, so a sample is one
``read_direct_chunk`` decoded here (raw, or gzip via isal/zlib with HDF5's shuffle undone by numpy)
instead of h5py's hyperslab selection; ~2-4x less time per sample. Falls back to ``d[i]`` for any
other layout or filter, and for a chunk whose filter HDF5 skipped (it does when it would not shrink)."""

from __future__ import annotations

import zlib

import h5py
import numpy as np

try:  # isal inflates gzip ~2x faster than zlib; both read the same bytes
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - isal is a dependency
    _inflate_lib = zlib


class ChunkReader:
    """Reads sample ``i`` of a sample dataset (first axis = samples) as a numpy array."""

    def __init__(self, d: h5py.Dataset):
        self.d = d
        self.shape = d.shape[1:]
        filters = set(getattr(d, "_filters", {}) or {})
        self.direct = d.chunks == (1, *self.shape) and filters <= {"gzip", "shuffle"}
        self.gzip, self.shuffle = "gzip" in filters, "shuffle" in filters
        self.dtype = d.dtype

    def read(self, i: int) -> np.ndarray:
        if not self.direct:
            return self.d[i]
        skipped, raw = self.d.id.read_direct_chunk((int(i),) + (0,) * len(self.shape))
        if skipped:
            return self.d[i]
        if self.gzip:
            raw = _inflate_lib.decompress(raw)
        if self.shuffle and self.dtype.itemsize > 1:
            a = np.frombuffer(raw, np.uint8).reshape(self.dtype.itemsize, -1).T.copy().view(self.dtype)
        else:
            a = np.frombuffer(raw, self.dtype).copy()
        return a.reshape(self.shape)
