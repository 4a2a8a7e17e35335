"""The per-axis target of SliceGrid (added for CAMUS): any H x W to a square, areas kept in mm^2."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.geometry import SliceGrid


@settings(max_examples=40, deadline=None)
@given(h=st.integers(60, 400), w=st.integers(60, 400), sy=st.floats(0.1, 1.0), sx=st.floats(0.1, 1.0),
       size=st.sampled_from([64, 128, 256]))
def test_square_resize_keeps_mm2(h: int, w: int, sy: float, sx: float, size: int) -> None:
    yy, xx = np.mgrid[:h, :w]
    ellipse = (((yy - h / 2) / (0.3 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2 < 1).astype(np.uint8)
    stored = (sy * h / size, sx * w / size)
    grid = SliceGrid((h, w), (sy, sx), stored, (size, size))
    out = grid.labels(ellipse, 0)
    assert out.shape == (size, size)
    assert (out[0] == 0).all() and (out[:, 0] == 0).all()  # the whole field of view, no crop
    src_mm2 = ellipse.sum() * sy * sx
    # nearest-neighbour boundary error: at most about one pixel along the perimeter
    tol = 2 * np.pi * 0.3 * (h * sy + w * sx) / 2 * max(stored[0], stored[1], sy, sx)
    assert abs(out.sum() * stored[0] * stored[1] - src_mm2) <= tol
    image = grid.image(ellipse.astype(np.float32), 0.0)
    assert abs(image.mean() - ellipse.mean()) < 0.02  # bicubic keeps the mean brightness


def test_scalar_target_unchanged() -> None:
    a = np.random.default_rng(0).random((90, 70)).astype(np.float32)
    one, pair = SliceGrid((90, 70), (1.2, 0.8), 1.0, (64, 64)), SliceGrid((90, 70), (1.2, 0.8), (1.0, 1.0), (64, 64))
    assert np.array_equal(one.image(a, 0.0), pair.image(a, 0.0))
