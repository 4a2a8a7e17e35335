"""Resampling keeps physical size and alignment; crop/pad centres; letterbox keeps aspect."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.geometry import SliceGrid, letterbox


def _disk(shape: tuple[int, int], spacing: float, radius_mm: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return (np.hypot((yy - cy) * spacing, (xx - cx) * spacing) <= radius_mm).astype(np.uint8)


@pytest.mark.parametrize("spacing", [0.7, 1.25, 1.5625, 1.9])
def test_label_area_in_mm2_survives_resampling(spacing: float) -> None:
    disk = _disk((200, 180), spacing, 40.0)[..., None]
    grid = SliceGrid((200, 180), (spacing, spacing), 1.51, (224, 224))
    out = grid.labels(disk, 0)[..., 0]
    area_in, area_out = disk.sum() * spacing**2, out.sum() * 1.51**2
    assert abs(area_out - area_in) / area_in < 0.02
    assert abs(area_in - np.pi * 40**2) / (np.pi * 40**2) < 0.02


def test_image_and_labels_stay_aligned() -> None:
    """The bicubic image's 0.5 level set and the nearest-neighbour labels mark the same pixels."""
    disk = _disk((216, 256), 1.5625, 35.0)
    grid = SliceGrid((216, 256), (1.5625, 1.5625), 1.51, (224, 224))
    img = grid.image(disk.astype(np.float32)[..., None], 0.0)[..., 0]
    lab = grid.labels(disk[..., None], 0)[..., 0]
    agree = ((img > 0.5) == (lab == 1)).mean()
    assert agree > 0.995
    # centre of mass identical to within a fraction of a pixel (no half-pixel drift)
    com = lambda a: np.array(np.nonzero(a)).mean(axis=1)  # noqa: E731
    assert np.abs(com(img > 0.5) - com(lab)).max() < 0.25


@pytest.mark.parametrize("shape,size", [((216, 256), (224, 224)), ((300, 280), (96, 128))])
def test_a_stack_resamples_like_its_slices_in_either_memory_order(shape, size) -> None:
    """A NIfTI volume (Fortran order) is resampled as a whole stack; each slice must come out as if
    resampled alone, whatever the memory order (first case pads rows, second crops both axes)."""
    rng = np.random.default_rng(0)
    vol = np.asfortranarray(rng.normal(size=(*shape, 5)).astype(np.float32))
    lab = np.asfortranarray(rng.integers(0, 4, (*shape, 5)).astype(np.uint8))
    grid = SliceGrid(shape, (1.4, 1.3), 1.51, size)
    for stack_of in (lambda a: np.moveaxis(a, -1, 0), lambda a: np.ascontiguousarray(np.moveaxis(a, -1, 0))):
        images = grid.slices_image(stack_of(vol), -3.0)
        labels = grid.slices_labels(stack_of(lab), 255)
        assert images.shape == labels.shape == (5, *size) and images.flags.c_contiguous
        for z in range(5):
            np.testing.assert_allclose(images[z], grid.image(np.ascontiguousarray(vol[..., z]), -3.0),
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(labels[z], grid.labels(np.ascontiguousarray(lab[..., z]), 255))
    # labels are values of the input, never interpolated; the pad (if any) takes the fill value
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 255}


@pytest.mark.parametrize("column_major", [False, True])
def test_smooth_images_resample_exactly(column_major: bool) -> None:
    """An independent reference: Keys cubic convolution reproduces polynomials up to degree 2, so
    away from the edges a quadratic image must come out as the quadratic sampled at each output
    pixel's input coordinate (o + 0.5) * target / spacing - 0.5, in either memory order."""
    shape, spacing, target, size = (120, 100), (1.3, 0.9), 1.51, (96, 96)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    f = lambda y, x: 0.01 * y * y - 0.3 * x + 0.02 * x * y + 5.0  # noqa: E731
    stack = np.stack([f(yy, xx), 2 * f(yy, xx)]).astype(np.float32)  # (2, H, W)
    if column_major:
        stack = np.asfortranarray(stack.transpose(1, 2, 0)).transpose(2, 0, 1)
    grid = SliceGrid(shape, spacing, target, size)
    out = grid.slices_image(stack, 0.0)
    # worked out by hand, not taken from the grid: rows resample to round(120 * 1.3 / 1.51) = 103,
    # centre-cropped from index 3; columns to round(100 * 0.9 / 1.51) = 60, centre-padded at 18
    rows, cols = np.arange(96), np.arange(18, 78)
    ry = (rows + 3 + 0.5) * target / spacing[0] - 0.5  # input coordinates of those output pixels
    cx = (cols - 18 + 0.5) * target / spacing[1] - 0.5
    assert (out[:, :, :18] == 0).all() and (out[:, :, 78:] == 0).all()  # the padding takes the fill
    inner = (ry[:, None] > 2) & (ry[:, None] < shape[0] - 3) & (cx[None, :] > 2) & (cx[None, :] < shape[1] - 3)
    expected = f(ry[:, None], cx[None, :])
    got = out[:, rows[:, None], cols[None, :]]
    np.testing.assert_allclose(got[0][inner], expected[inner], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got[1][inner], 2 * expected[inner], rtol=1e-4, atol=1e-3)
    assert inner.sum() > 0.8 * inner.size


def test_grid_pads_with_fill_when_the_field_of_view_is_small() -> None:
    grid = SliceGrid((50, 60), (1.0, 1.0), 1.0, (64, 64))
    lab = grid.labels(np.ones((50, 60, 1), np.uint8), 255)[..., 0]
    assert (lab == 1).sum() == 50 * 60 and (lab == 255).sum() == 64 * 64 - 3000
    img = grid.image(np.full((50, 60, 1), 3.0, np.float32), -7.0)[..., 0]
    assert np.allclose(img[lab == 1], 3.0) and np.all(img[lab == 255] == -7.0)


def test_letterbox_keeps_aspect_and_reports_transform() -> None:
    a = np.zeros((100, 200), np.uint8)
    a[40:60, 90:110] = 1
    out, scale, (oy, ox) = letterbox(a, 64, 0, 0)
    assert out.shape == (64, 64) and scale == pytest.approx(0.32) and (oy, ox) == (16, 0)
    rows, cols = np.nonzero(out)
    # content centre (row 49.5, col 99.5) maps to (p + .5) * scale - .5 + offset
    assert rows.mean() == pytest.approx((49.5 + 0.5) * scale - 0.5 + oy, abs=0.5)
    assert cols.mean() == pytest.approx((99.5 + 0.5) * scale - 0.5 + ox, abs=0.5)


@pytest.mark.parametrize("method", ["percentile-iqr", "zscore", "minmax", "scale255", "none"])
def test_raw_background_normalises_to_the_padding_level(method: str) -> None:
    from datakit.normalize import fit_normalizer

    v = np.random.default_rng(0).gamma(2.0, 50.0, (20, 30, 4)).astype(np.float32)
    norm = fit_normalizer(method, v)
    out = norm.apply(np.full((2, 2), norm.raw_background, np.float32))
    assert np.allclose(out, norm.background)
    moved = norm.apply(np.moveaxis(v, -1, 0))
    assert moved.flags["C_CONTIGUOUS"] and moved.dtype == np.float32 and moved.shape == (4, 20, 30)


def _centroid(a: np.ndarray) -> tuple[float, float]:
    rows, cols = np.mgrid[: a.shape[0], : a.shape[1]]
    w = a.astype(np.float64)
    return (w * rows).sum() / w.sum(), (w * cols).sum() / w.sum()


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("order", [1, 3])
def test_letterbox_puts_a_blob_where_pixel_transform_maps_it(order: int, size: int) -> None:
    """Both axes use the one ``scale`` of PixelTransform: 241 x 333 has a short axis where
    h * scale is not whole, and per-axis zooms nh / h put content ~0.25 px off there."""
    from datakit.sources.unity.splines import PixelTransform

    h, w, cy, cx = 241, 333, 200.3, 290.7  # near the far corner, where a scale error grows largest
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 5.0**2)).astype(np.float32)
    out, scale, offset = letterbox(blob, size, order, 0.0)
    tx, ty = PixelTransform(scale, offset).apply(np.array([cx]), np.array([cy]))
    row, col = _centroid(out)
    assert abs(row - ty[0]) < 0.05 and abs(col - tx[0]) < 0.05
    # leading axes are resampled plane by plane, each like a 2D call
    stack, _, _ = letterbox(np.stack([blob, 2 * blob]), size, order, 0.0)
    np.testing.assert_allclose(stack[1], 2 * out, rtol=1e-5, atol=1e-6)


def test_letterbox_nearest_follows_pixel_transform() -> None:
    from datakit.sources.unity.splines import PixelTransform

    h, w, size = 241, 333, 256
    # every pixel holds its own row / column index: each output pixel must take the input pixel
    # whose mapped centre is nearest to it, i.e. within half an input pixel (scale / 2 output px)
    rows = np.repeat(np.arange(h, dtype=np.int32)[:, None], w, axis=1)
    cols = np.repeat(np.arange(w, dtype=np.int32)[None, :], h, axis=0)
    out, scale, (oy, ox) = letterbox(np.stack([rows, cols]), size, 0, -1)
    tf = PixelTransform(scale, (oy, ox))
    keep = out[0] >= 0
    o_row, o_col = np.nonzero(keep)
    mx, my = tf.apply(out[1][keep].astype(float), out[0][keep].astype(float))
    assert np.abs(my - o_row).max() <= scale / 2 + 1e-9 and np.abs(mx - o_col).max() <= scale / 2 + 1e-9
    # a disk label lands where its centre maps, as the image does
    cy, cx = 200.3, 290.7
    yy, xx = np.mgrid[:h, :w]
    disk = (np.hypot(yy - cy, xx - cx) <= 30).astype(np.uint8)
    lab, _, _ = letterbox(disk, size, 0, 0)
    tx, ty = tf.apply(np.array([cx]), np.array([cy]))
    row, col = _centroid(lab)
    assert abs(row - ty[0]) < 0.05 and abs(col - tx[0]) < 0.05
