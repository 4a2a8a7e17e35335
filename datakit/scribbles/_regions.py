"""Shared pieces of the scribble algorithms: class regions, thinning, drawing a thick stroke.

Everything works per connected region of one class so that every region of a slice (two RV
pieces, a ring of myocardium, the background) gets its own scribble, and every stroke is cut back
to its region: the algorithms never rely on :func:`datakit.scribbles.synthesize` to clean up.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from datakit.errors import DatakitError

IGNORE = 255
MIN_AREA = 10  # regions smaller than this (a few stray pixels) get no scribble
BACKGROUND_BAND = 15  # px: background scribbles stay this close to the labelled structures

# 8-neighbourhood offsets (row, column)
NEIGHBOURS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def class_regions(mask: np.ndarray, n_classes: int, min_area: int = MIN_AREA,
                  band: int = BACKGROUND_BAND) -> Iterator[tuple[int, np.ndarray]]:
    """``(class, boolean region)`` for each 8-connected region of each class present in ``mask``.

    Label 0 is the background. Like an annotator, who marks background next to the structures
    rather than across the whole field of view, its region is the band of background within
    ``band`` px of the other classes (all of it on a slice with no other class).
    """
    from scipy import ndimage

    present = np.unique(mask)
    for c in present[present < n_classes]:
        where = mask == c
        if c == 0:
            fg = (mask != 0) & (mask != IGNORE)
            if fg.any():
                where &= ndimage.distance_transform_edt(~fg) <= band
        labels, n = ndimage.label(where, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for k in range(1, n + 1):
            if sizes[k] >= min_area:
                yield int(c), labels == k


def crop_box(region: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box of ``region`` grown by ``margin`` (work on a crop: large masks, small regions)."""
    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    h, w = region.shape
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
            slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)))


def thin(path: np.ndarray) -> np.ndarray:
    """One-pixel-wide skeleton; a region too small to thin keeps its most interior pixel."""
    from skimage.morphology import skeletonize

    sk = skeletonize(path)
    if not sk.any() and path.any():
        sk = np.zeros_like(path)
        sk[innermost(path)] = True
    return sk


def innermost(region: np.ndarray) -> tuple[int, int]:
    """The pixel farthest from the region's border."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(r), int(c)


def stroke(line: np.ndarray, region: np.ndarray, thickness: int) -> np.ndarray:
    """Draw ``line`` ``thickness`` pixels wide (a disc brush) and keep it inside ``region``."""
    from scipy import ndimage

    if thickness <= 1:
        return line & region
    c = np.arange(thickness) - (thickness - 1) / 2  # even widths: a brush centred between pixels
    brush = c[:, None] ** 2 + c[None, :] ** 2 <= ((thickness - 1) / 2) ** 2 + 0.5
    return ndimage.binary_dilation(line, structure=brush) & region


def check_thickness(thickness: int) -> int:
    if int(thickness) != thickness or thickness < 1:
        raise DatakitError(f"scribble thickness must be a whole number of pixels >= 1, not {thickness!r}")
    return int(thickness)


def check_fraction(name: str, value: float) -> float:
    if not 0 < float(value) <= 1:
        raise DatakitError(f"scribble {name} must be a fraction in (0, 1], not {value!r}")
    return float(value)


def empty_like(mask: np.ndarray) -> np.ndarray:
    return np.full(mask.shape, IGNORE, np.uint8)
