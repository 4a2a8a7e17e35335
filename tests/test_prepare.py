"""The shared 2D preparation step (normalise, anti-alias, letterbox) of the folder and Unity sources."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.prepare import antialiased, prepare_2d


@pytest.mark.parametrize("normalise_first", [True, False])
def test_padding_is_the_normalised_background_in_both_orders(normalise_first: bool) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(10, 200, (1, 30, 60)).astype(np.float32)
    p = prepare_2d(img, 32, "zscore", normalise_first=normalise_first, antialias=False)
    assert p.image.shape == (1, 32, 32) and p.image.dtype == np.float32 and p.image.flags.c_contiguous
    assert p.scale == pytest.approx(32 / 60) and p.offset[0] > 0 and p.offset[1] == 0
    top = p.image[0, : p.offset[0]]
    assert top.size and np.all(top == np.float32(p.normalizer.background)) and not np.isnan(p.image).any()
    inside = p.image[0, p.offset[0] + 2: 32 - p.offset[0] - 2]
    assert abs(float(inside.mean())) < 0.3  # zscore of the content


def test_the_two_orders_agree_to_rounding() -> None:
    img = np.random.default_rng(1).integers(0, 256, (50, 70)).astype(np.float32)
    a = prepare_2d(img, 24, "scale255", normalise_first=True, antialias=False).image
    b = prepare_2d(img, 24, "scale255", normalise_first=False, antialias=False).image
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_antialiasing_blurs_only_when_shrinking() -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)[None]
    assert antialiased(checker, 64) is checker
    blurred = antialiased(checker, 16)
    assert blurred.std() < 0.1 * checker.std()
    sharp = prepare_2d(checker, 23, "none", antialias=False).image  # moire: the checker aliases
    soft = prepare_2d(checker, 23, "none", antialias=True).image
    assert sharp.std() > 0.1 and soft.std() < 0.01
