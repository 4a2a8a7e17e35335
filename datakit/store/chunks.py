"""The store's chunk codec, both ways: one sample per chunk, images raw float32 (or float16 with
``--image-dtype float16``; gzip over HDF5's shuffle with ``--image-compression gzip``), masks and
scribbles gzip. :class:`ImageFormat` is the one place that names how images are stored.

Encoding (:meth:`ImageFormat.encode`, :func:`encode_labels`) runs in the converters' workers; the writer
stores the ready chunks with ``write_direct_chunk``, byte for byte what h5py itself would write.

Decoding (:class:`ChunkReader`): a sample is one ``read_direct_chunk`` decoded here (raw, or gzip
with HDF5's shuffle undone by numpy) instead of h5py's hyperslab selection; ~2-4x less time per
sample. Falls back to ``d[i]`` for any other layout or filter, and for a chunk whose filter HDF5
skipped (it does when it would not shrink).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from datakit.choices import IMAGE_COMPRESSIONS, IMAGE_DTYPES
from datakit.deflate import ISAL, zlib
from datakit.errors import DatakitError
from datakit.store.contract import IMAGE_GZIP_LEVEL, LABEL_GZIP_LEVEL

if TYPE_CHECKING:
    import h5py


def _deflate(raw: bytes, level: int) -> bytes:
    # isal accepts levels 0-3 only; its level 1-2 compress like zlib's 4-6 at a fraction of the time
    if ISAL:
        level = min(level, 3)
    return zlib.compress(raw, level)


def _shuffled(a: np.ndarray) -> bytes:
    """HDF5's shuffle filter: byte k of every element, for k = 0..itemsize-1."""
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return b.T.tobytes()


def _unshuffled(raw: bytes, dtype: np.dtype) -> np.ndarray:
    """The inverse of :func:`_shuffled` (a new, writable array)."""
    return np.frombuffer(raw, np.uint8).reshape(dtype.itemsize, -1).T.copy().view(dtype)


FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


@dataclass(frozen=True)
class ImageFormat:
    """How a store holds its images: element type and filter. float16 halves the store (a contract
    extension: readers cast to float32); gzip is level 1 over HDF5's shuffle."""

    dtype: str = "float32"
    compression: str = "none"

    def __post_init__(self) -> None:
        if self.dtype not in IMAGE_DTYPES:
            raise DatakitError(f"image dtype must be one of {', '.join(IMAGE_DTYPES)}, not {self.dtype!r}")
        if self.compression not in IMAGE_COMPRESSIONS:
            raise DatakitError(f"image compression must be one of {', '.join(IMAGE_COMPRESSIONS)}, "
                               f"not {self.compression!r}")

    @classmethod
    def of(cls, d: h5py.Dataset) -> ImageFormat | None:
        """The format of an existing images dataset; None if the writer cannot produce it exactly."""
        if d.dtype.name not in IMAGE_DTYPES or d.fletcher32 or d.scaleoffset is not None:
            return None
        if d.compression is None and not d.shuffle:
            return cls(d.dtype.name, "none")
        if d.compression == "gzip" and d.shuffle:
            return cls(d.dtype.name, "gzip")
        return None

    @classmethod
    def like(cls, d: h5py.Dataset) -> ImageFormat:
        """The format a copy of ``d`` keeps: its own, else float32 (a float16 source stays float16)."""
        return cls.of(d) or cls("float16" if d.dtype == np.float16 else "float32")

    def dataset_options(self) -> dict[str, object]:
        """``create_dataset`` keywords (besides shape and chunks) for an images dataset."""
        gzip = {"compression": "gzip", "compression_opts": IMAGE_GZIP_LEVEL, "shuffle": True} \
            if self.compression == "gzip" else {}
        return {"dtype": np.dtype(self.dtype), **gzip}

    def encode(self, image: np.ndarray) -> bytes:
        """One image chunk as the store holds it. float16 refuses finite values it cannot hold."""
        a = np.asarray(image)
        if self.dtype == "float16" and a.size and not max(-a.min(), a.max()) <= FLOAT16_MAX:  # fast: no copy
            peak = float(np.max(np.abs(a), initial=0.0, where=np.isfinite(a)))  # beyond range, or inf / NaN
            if peak > FLOAT16_MAX:
                raise DatakitError(f"image values reach {peak:.6g}, beyond float16's range (+-{FLOAT16_MAX:.0f}); "
                                   "normalize the images or keep --image-dtype float32")
        a = np.ascontiguousarray(a, dtype=self.dtype)
        return _deflate(_shuffled(a), IMAGE_GZIP_LEVEL) if self.compression == "gzip" else a.tobytes()


def encode_labels(labels: np.ndarray) -> bytes:
    """One mask or scribble chunk as the store holds it (gzip)."""
    return _deflate(np.ascontiguousarray(labels, np.uint8).tobytes(), LABEL_GZIP_LEVEL)


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
            raw = zlib.decompress(raw)
        if self.shuffle and self.dtype.itemsize > 1:
            a = _unshuffled(raw, self.dtype)
        else:
            a = np.frombuffer(raw, self.dtype).copy()
        return a.reshape(self.shape)
