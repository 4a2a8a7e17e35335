"""Shared pieces of the scribble algorithms: class regions, thinning, drawing a thick stroke.

Everything works per connected region of one class so that every region of a slice (two RV
pieces, a ring of myocardium, the background) gets its own scribble, and every stroke is cut back
to its region: the algorithms never rely on :func:`datakit.scribbles.synthesize` to clean up.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError

MIN_AREA = 10  # regions smaller than this (a few stray pixels) get no scribble
BACKGROUND_BAND = 15  # px: background scribbles stay this close to the labelled structures

# 8-neighbourhood offsets (row, column)
NEIGHBOURS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def class_regions(mask: np.ndarray, n_classes: int, margin: int = 0, min_area: int = MIN_AREA,
                  band: int = BACKGROUND_BAND) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray]]:
    """``(class, box, region)`` for each 8-connected region of each class present in ``mask``:
    ``region`` is the boolean region cropped to ``box``, its bounding box grown by ``margin`` px.

    Label 0 is the background. Like an annotator, who marks background next to the structures
    rather than across the whole field of view, a background region is cut to the band within
    ``band`` px of the other classes (unless it has no pixel there: then all of it).
    """
    from scipy import ndimage

    present = np.unique(mask)
    eight = np.ones((3, 3), bool)
    for c in present[present < n_classes]:
        labels, n = ndimage.label(mask == c, structure=eight)
        near = _band(mask, band) if c == 0 else None
        for k, found in enumerate(ndimage.find_objects(labels), start=1):
            if found is None:
                continue
            box = _grow(found, margin, mask.shape)
            region = labels[box] == k
            if near is not None and (region & near[box]).sum() >= min_area:
                region &= near[box]  # a background piece far from every structure keeps all of itself
            if region.sum() >= min_area:
                yield int(c), box, region


def _band(mask: np.ndarray, band: int) -> np.ndarray | None:
    """Pixels within ``band`` px of a labelled structure (None on a slice without one)."""
    from scipy import ndimage

    fg = (mask != 0) & (mask != IGNORE)
    if not fg.any():
        return None
    box = crop_box(fg, band + 1)  # the band lies inside the structures' box grown by it
    near = np.zeros(mask.shape, bool)
    near[box] = ndimage.distance_transform_edt(~fg[box]) <= band
    return near


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    return (slice(max(box[0].start - margin, 0), min(box[0].stop + margin, shape[0])),
            slice(max(box[1].start - margin, 0), min(box[1].stop + margin, shape[1])))


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

