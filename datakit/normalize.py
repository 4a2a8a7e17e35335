"""Intensity normalisation, computed per volume (or per image for 2D sources).

Each method has a name recorded in the store (images.attrs["normalization"]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from datakit.choices import NORMALIZATIONS
from datakit.errors import DatakitError


@dataclass(frozen=True)
class Normalizer:
    """``apply(x)`` maps raw intensities with statistics fitted on one volume."""

    name: str
    apply: Callable[[np.ndarray], np.ndarray]  # output float32, C-contiguous in x's logical order
    background: float  # normalised value of the darkest intensity: padding level
    raw_background: float  # a raw intensity that ``apply`` maps to ``background``


PERCENTILE_SAMPLE = 1 << 16  # voxels used to estimate a volume's percentiles


def _percentile_sample(volume: np.ndarray) -> np.ndarray:
    """Every k-th voxel, k chosen to keep at least 2^16 of them.

    The standard error of an estimated 5th percentile from 2^16 voxels is sqrt(.05 * .95 / 2^16),
    0.09 percentile points: far below anything the normalisation is sensitive to, at a tenth of the
    cost of partitioning a whole cine volume. Deterministic (no random draw), so conversions repeat.
    """
    flat = volume.ravel(order="K")  # a view in the array's own memory order (NIfTI data are Fortran)
    step = max(1, flat.size // PERCENTILE_SAMPLE)
    return flat[::step]


def _percentile_iqr(volume: np.ndarray) -> Normalizer:
    # Clipping is monotonic, so quantiles between the 5th and 95th are those of the clipped volume:
    # one partition gives all five.
    lo, q1, clipped_median, q3, hi = np.percentile(_percentile_sample(volume), [5, 25, 50, 75, 95])
    iqr = float(q3 - q1) or 1.0

    lo32, hi32 = np.float32(lo), np.float32(hi)  # float64 bounds would make clip run in float64

    def apply(x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, np.float32)  # C order whatever x's layout: samples are then views
        np.clip(x, lo32, hi32, out=out)
        out -= np.float32(clipped_median)
        out /= np.float32(iqr)
        return out

    return Normalizer("percentile_iqr:5-95", apply, float((lo - clipped_median) / iqr), float(lo))


def _zscore(volume: np.ndarray) -> Normalizer:
    mean, std, lo = float(volume.mean()), float(volume.std()) or 1.0, float(volume.min())
    return Normalizer("zscore", lambda x: np.ascontiguousarray((x - mean) / std, np.float32), (lo - mean) / std, lo)


def _minmax(volume: np.ndarray) -> Normalizer:
    lo, hi = float(volume.min()), float(volume.max())
    span = (hi - lo) or 1.0
    return Normalizer("minmax", lambda x: np.ascontiguousarray((x - lo) / span, np.float32), 0.0, lo)


def _scale255(volume: np.ndarray) -> Normalizer:
    """8-bit images to [0, 1] with a fixed scale (keeps absolute echo brightness)."""
    return Normalizer("scale:1/255", lambda x: np.ascontiguousarray(x / 255.0, np.float32), 0.0, 0.0)


def _none(volume: np.ndarray) -> Normalizer:
    lo = float(volume.min())
    return Normalizer("none", lambda x: np.ascontiguousarray(x, np.float32), lo, lo)


# --norm name -> fitting function, the names in datakit.choices' order
NORMALIZERS: dict[str, Callable[[np.ndarray], Normalizer]] = dict(zip(
    NORMALIZATIONS, (_percentile_iqr, _zscore, _minmax, _scale255, _none), strict=True))


def normalizer_name(method: str) -> str:
    """The name a store records for ``--norm method``; a clear error for an unknown one (sources
    call this when built, so that a typo fails before any patient is read)."""
    return fit_normalizer(method, np.zeros(1, np.float32)).name


def fit_normalizer(method: str, volume: np.ndarray) -> Normalizer:
    """Fit normaliser ``method`` on ``volume`` (finite values only)."""
    if method not in NORMALIZERS:
        raise DatakitError(f"unknown --norm {method!r}; choose one of {', '.join(NORMALIZERS)}")
    v = np.asarray(volume, np.float32)
    return NORMALIZERS[method](v[np.isfinite(v)] if not np.isfinite(v).all() else v)
