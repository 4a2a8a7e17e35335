"""In-plane geometry shared by converters: resampling to a spacing, centre crop/pad, letterbox.

Resampling is separable: along each axis every output pixel is a weighted sum of 4 input rows
(Keys cubic convolution, a = -0.5, the "bicubic" of image libraries) or one (nearest neighbour,
labels). A whole volume is resampled at once with two sparse products, and the centre crop is
folded into the tap tables so that no pixel outside the output is ever computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                    np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))


def _centres(n_out: int, scale: float) -> np.ndarray:
    """Input coordinate of each output pixel centre (pixel o covers [o, o+1) output pixels)."""
    return (np.arange(n_out) + 0.5) * scale - 0.5


def _cubic_taps(n_in: int, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight) tables of shape (n_out, 4) for Keys cubic interpolation at ``coords``."""
    base = np.floor(coords).astype(np.int64)
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    weights = _keys_cubic(coords[:, None] - taps)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.clip(taps, 0, n_in - 1), weights.astype(np.float32)  # edge pixels replicate outward


def _sparse_rows(n_in: int, taps: tuple[np.ndarray, np.ndarray]):
    """The tap tables as a CSR matrix (n_out x n_in): one product resamples axis 0 of a 2D array.

    Built from its CSR arrays directly (4 entries per row): taps clipped at an edge repeat a
    column, and the product simply adds both entries.
    """
    from scipy import sparse  # imported here: sources that only letterbox never pay for it

    index, weight = taps
    indptr = np.arange(0, index.size + 1, index.shape[1], dtype=np.int32)
    return sparse.csr_matrix((weight.ravel(), index.ravel().astype(np.int32), indptr),
                             shape=(len(index), n_in))


def _block_diagonal(r, k: int):
    """``k`` copies of CSR matrix ``r`` on a diagonal: one product resamples a stack of k slices."""
    from scipy import sparse

    if k == 1:
        return r
    n_out, n_in = r.shape
    offsets = np.arange(k, dtype=np.int32)[:, None]
    indptr = np.append((r.indptr[:-1][None, :] + r.nnz * offsets).ravel(), np.int32(r.nnz * k))
    indices = (r.indices[None, :] + n_in * offsets).ravel()
    return sparse.csr_matrix((np.tile(r.data, k), indices, indptr), shape=(k * n_out, k * n_in))


def _nearest_index(n_in: int, coords: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(coords + 0.5).astype(np.int64), 0, n_in - 1)


@dataclass
class _Axis:
    coords: np.ndarray  # input coordinates of the kept output pixels
    dest: slice  # where they land in the output axis


def _axis(n_in: int, spacing: float, target: float, size: int) -> _Axis:
    n_res = max(1, int(round(n_in * spacing / target)))
    coords = _centres(n_res, target / spacing)
    if n_res >= size:  # centre crop
        start = (n_res - size) // 2
        return _Axis(coords[start:start + size], slice(0, size))
    start = (size - n_res) // 2  # centre pad
    return _Axis(coords, slice(start, start + n_res))


def _column_major(stack: np.ndarray) -> bool:
    """Whether each (H, W) slice of a (K, H, W) stack is stored column by column (Fortran)."""
    return stack.transpose(0, 2, 1).flags.c_contiguous and not stack.flags.c_contiguous


def _two_passes(b: np.ndarray, r_mid, r_last) -> np.ndarray:
    """Resample a C-order (K, M, L) stack along M with ``r_mid``, then along L with ``r_last``.

    Both products read contiguous rows; the one transposing copy in between is of the partly
    resampled stack. Returns (K, L', M') in C order (each slice transposed).
    """
    k, m, n = b.shape
    mm = r_mid.shape[0]
    t = (_block_diagonal(r_mid, k) @ b.reshape(k * m, n)).reshape(k, mm, n)
    t = np.ascontiguousarray(t.transpose(0, 2, 1))  # (K, L, M')
    return (_block_diagonal(r_last, k) @ t.reshape(k * n, mm)).reshape(k, -1, mm)


class SliceGrid:
    """In-plane resampling of (H, W, ...) arrays to ``target`` mm, centre cropped/padded to ``size``.

    ``target`` is one spacing for both axes or a (row, col) pair. Spacing of the result is exactly
    ``target``: output pixel centres map to input coordinates (o + 0.5) * target / s - 0.5.
    Images and labels share the mapping, so labels never drift.
    """

    def __init__(self, shape: tuple[int, int], spacing: tuple[float, float],
                 target: float | tuple[float, float], size: tuple[int, int]):
        self.shape = tuple(shape)
        self.size = tuple(size)
        # a (row, col) target resizes anisotropically (e.g. CAMUS: any H x W to a square)
        t_row, t_col = target if isinstance(target, tuple) else (target, target)
        self.rows = _axis(shape[0], spacing[0], t_row, size[0])
        self.cols = _axis(shape[1], spacing[1], t_col, size[1])
        self._ry = _sparse_rows(shape[0], _cubic_taps(shape[0], self.rows.coords))
        self._rx = _sparse_rows(shape[1], _cubic_taps(shape[1], self.cols.coords))
        self._ri = _nearest_index(shape[0], self.rows.coords)
        self._ci = _nearest_index(shape[1], self.cols.coords)

    def slices_image(self, stack: np.ndarray, fill: float) -> np.ndarray:
        """Bicubic (Keys) resampling of a (K, H, W) stack of slices to (K, *size) float32, C order.

        Slices may be stored row by row (C order) or column by column, as NIfTI volumes are:
        ``np.moveaxis(volume, -1, 0)`` of a Fortran (H, W, Z) array is read in place, with no
        transposing copy of the input. Padding takes ``fill``.
        """
        stack = stack.astype(np.float32, copy=False)
        if _column_major(stack):  # (K, W, H) in C order: columns first, the result is (K, H', W')
            return self._place(_two_passes(stack.transpose(0, 2, 1), self._rx, self._ry), fill)
        rows_first = _two_passes(np.ascontiguousarray(stack), self._ry, self._rx)  # (K, W', H')
        return self._place(rows_first.transpose(0, 2, 1), fill)

    def slices_labels(self, stack: np.ndarray, fill: int) -> np.ndarray:
        """Nearest-neighbour resampling of a (K, H, W) stack of label slices to (K, *size), C order."""
        if _column_major(stack):  # gather whole columns, transpose the (smaller) result, gather rows
            t = np.ascontiguousarray(stack.transpose(0, 2, 1).take(self._ci, axis=1).transpose(0, 2, 1))
            return self._place(t.take(self._ri, axis=1), fill)
        return self._place(stack.take(self._ri, axis=1).take(self._ci, axis=2), fill)

    def image(self, a: np.ndarray, fill: float) -> np.ndarray:
        """Bicubic (Keys) resampling of (H, W, *rest) float data; padding takes ``fill``."""
        return self._per_slice(self.slices_image, a, fill)

    def labels(self, a: np.ndarray, fill: int) -> np.ndarray:
        """Nearest-neighbour resampling of (H, W, *rest) label data; padding takes ``fill``."""
        return self._per_slice(self.slices_labels, a, fill)

    def _per_slice(self, fn, a: np.ndarray, fill):
        h, w = a.shape[:2]
        out = fn(np.moveaxis(a.reshape(h, w, -1), -1, 0), fill)  # (K, *size)
        return np.moveaxis(out, 0, -1).reshape(self.size + a.shape[2:])

    def _place(self, t: np.ndarray, fill) -> np.ndarray:
        """(K, h, w) resampled slices into a C-order (K, *size) array, centred, padded with ``fill``."""
        if t.shape[1:] == self.size:  # cropped on both axes: nothing to pad
            return np.ascontiguousarray(t)
        out = np.full((len(t),) + self.size, fill, t.dtype)
        out[:, self.rows.dest, self.cols.dest] = t
        return out


def letterbox(a: np.ndarray, size: int, order: int, fill: float) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize the last two axes to fit ``size`` x ``size`` keeping aspect, pad the rest with ``fill``.

    ``order`` 0 is nearest (labels), otherwise linear/cubic spline. Returns the array, the scale
    (output px per input px) and the (row, col) offset of the content: a point at input pixel
    coordinate p (pixel centres at integers) lands at ``(p + 0.5) * scale - 0.5 + offset``.
    """
    h, w = a.shape[-2:]
    scale = size / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    # input coordinate of content pixel o on either axis: the documented transform inverted, with
    # the same ``scale`` on both axes (nh / h and nw / w differ from it when h * scale is not whole)
    inv = 1.0 / scale
    shift = 0.5 * inv - 0.5
    if order == 0:
        rows = _nearest_index(h, np.arange(nh) * inv + shift)
        cols = _nearest_index(w, np.arange(nw) * inv + shift)
        resized = a[..., rows[:, None], cols[None, :]]
    else:
        from scipy import ndimage  # slow to import (~0.5 s); only this path needs it

        planes = a.astype(np.float32, copy=False).reshape((-1, h, w))
        resized = np.empty((len(planes), nh, nw), np.float32)
        for i, plane in enumerate(planes):  # per channel: no interpolation across leading axes
            ndimage.affine_transform(plane, [inv, inv], offset=shift, output_shape=(nh, nw),
                                     output=resized[i], order=order, mode="nearest")
        resized = resized.reshape(a.shape[:-2] + (nh, nw))
    out = np.full(a.shape[:-2] + (size, size), fill, dtype=resized.dtype)
    oy, ox = (size - nh) // 2, (size - nw) // 2
    out[..., oy:oy + nh, ox:ox + nw] = resized
    return out, scale, (oy, ox)


def letterbox_index(n_in: int, scale: float, offset: int, n_content: int) -> np.ndarray:
    """Along one axis of :func:`letterbox`'s output: the output pixel nearest each input pixel's centre
    (input pixel p lands at ``(p + 0.5) * scale - 0.5 + offset``), within the ``n_content`` pixels of
    content from ``offset``. Indexing an output label map with it puts the labels back on the input grid."""
    at = np.floor((np.arange(n_in) + 0.5) * scale - 0.5 + offset + 0.5).astype(np.int64)
    return np.clip(at, offset, offset + n_content - 1)


def _axis_map(n_in: int, spacing: float, target: float, size: int) -> tuple[float, float]:
    """(scale, offset): stored pixel o has its centre at source coordinate o * scale + offset (the
    mapping of :func:`_axis`: resample to ``target``, then centre crop or pad to ``size``)."""
    n_res = max(1, int(round(n_in * spacing / target)))
    shift = (n_res - size) // 2 if n_res >= size else -((size - n_res) // 2)
    a = target / spacing
    return a, (shift + 0.5) * a - 0.5


def stored_affine(source_affine: np.ndarray, source_shape: tuple[int, int], source_spacing: tuple[float, float],
                  stored_spacing: tuple[float, float], size: tuple[int, int], first_slice: int = 0) -> np.ndarray:
    """World affine (4 x 4) of the STORED grid of a volume's slices (rows, columns, slices).

    ``source_affine`` maps the source volume's voxel indices (rows, columns, slices: nibabel's array
    order) to world mm; the stored pixel (r, c) of slice ``first_slice + k`` is the source voxel at
    the coordinates :class:`SliceGrid` maps it to. So the result keeps the source's directions,
    has the stored spacing along rows and columns, and an origin moved by the resample + crop/pad
    (and by ``first_slice``): a viewer overlays it on the source image exactly.
    """
    ar, br = _axis_map(int(source_shape[0]), float(source_spacing[0]), float(stored_spacing[0]), int(size[0]))
    ac, bc = _axis_map(int(source_shape[1]), float(source_spacing[1]), float(stored_spacing[1]), int(size[1]))
    index = np.array([[ar, 0, 0, br], [0, ac, 0, bc], [0, 0, 1, first_slice], [0, 0, 0, 1]], np.float64)
    return np.asarray(source_affine, np.float64) @ index


def shifted_affine(source_affine: np.ndarray, first_slice: int) -> np.ndarray:
    """The source affine of a volume that starts at slice ``first_slice`` of the source."""
    shift = np.eye(4)
    shift[2, 3] = first_slice
    return np.asarray(source_affine, np.float64) @ shift
