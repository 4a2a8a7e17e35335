"""The 2D preparation step of the sources that letterbox (folder, Unity): normalise, anti-alias, fit
into ``size`` x ``size`` keeping the aspect, padding at the normalised background level.

The two orders are kept as they were, since they give different bytes: the folder source normalises,
blurs and then interpolates the normalised image; Unity interpolates the raw 8-bit frame and then
normalises it (no blur). Both fit the normaliser's statistics on the source image.

ACDC and CAMUS do not letterbox: they resample in millimetres on a :class:`datakit.geometry.SliceGrid`
built once per volume or sequence (ACDC normalises per volume first, CAMUS per resampled frame), so
they keep their own steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datakit.geometry import letterbox
from datakit.normalize import Normalizer, fit_normalizer


@dataclass(frozen=True)
class Prepared:
    image: np.ndarray  # (..., size, size) float32, C-contiguous
    scale: float  # output pixels per input pixel (letterbox)
    offset: tuple[int, int]  # (row, column) of the content in the output
    normalizer: Normalizer


def antialiased(image: np.ndarray, size: int) -> np.ndarray:
    """Blur before shrinking (as skimage's resize does: sigma = (factor - 1) / 2), else a 1348-pixel
    endoscopy frame shrunk to 256 by linear interpolation aliases fine texture into moire."""
    factor = max(image.shape[-2:]) / size
    if factor <= 1:
        return image
    from scipy import ndimage

    sigma = (factor - 1) / 2
    return ndimage.gaussian_filter(image, sigma=(0,) * (image.ndim - 2) + (sigma, sigma), mode="nearest")


def prepare_2d(image: np.ndarray, size: int, norm: str, *, normalise_first: bool = True,
               antialias: bool = True) -> Prepared:
    """``image`` (..., H, W) normalised with ``--norm norm`` and letterboxed to ``size`` x ``size``.

    ``normalise_first``: normalise, (blur), interpolate; else interpolate the raw intensities, then
    normalise. Either way the padding holds the normalised background level.
    """
    normalizer = fit_normalizer(norm, image)
    if normalise_first:
        x = normalizer.apply(image)
        boxed, scale, offset = letterbox(antialiased(x, size) if antialias else x, size, order=1,
                                         fill=normalizer.background)
        return Prepared(np.ascontiguousarray(boxed, np.float32), scale, offset, normalizer)
    boxed, scale, offset = letterbox(antialiased(image, size) if antialias else image, size, order=1,
                                     fill=math.nan)
    out = normalizer.apply(boxed)
    out[np.isnan(out)] = normalizer.background  # padding: the normalised background level
    return Prepared(out, scale, offset, normalizer)
