"""How good are scribbles? Agreement with the mask, regions reached, coverage per class.

Used by ``benchmarks/scribble_coverage.py`` and the acceptance test to compare synthetic
scribbles with manual ones on the same stored slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datakit.constants import IGNORE

REGION_MIN_PX = 50  # a "class region" for the reached-regions figure: 8-connected, >= 50 px


@dataclass
class ScribbleQuality:
    """Per class (index = label value) over a set of slices."""

    classes: list[str]
    scribble_px: np.ndarray  # scribble pixels of the class
    agree_px: np.ndarray  # ... of which the mask has the same class
    regions: np.ndarray  # class regions of >= REGION_MIN_PX pixels
    regions_hit: np.ndarray  # ... of which at least one pixel is scribbled with the class
    slices: int
    pixels: int  # of one slice (H * W)

    @property
    def agreement(self) -> np.ndarray:
        """Fraction of scribble pixels that carry the mask's class (1.0 when none)."""
        return np.divide(self.agree_px, self.scribble_px, out=np.ones(len(self.classes)),
                         where=self.scribble_px > 0)

    @property
    def reached(self) -> np.ndarray:
        return np.divide(self.regions_hit, self.regions, out=np.ones(len(self.classes)), where=self.regions > 0)

    @property
    def coverage_pct(self) -> np.ndarray:
        """Mean over slices of the % of the image's pixels scribbled with each class."""
        return 100.0 * self.scribble_px / max(self.slices * self.pixels, 1)


def scribble_quality(masks: np.ndarray, scribbles: np.ndarray, classes: list[str]) -> ScribbleQuality:
    """Measure (N, H, W) scribbles against their (N, H, W) masks; slices without a mask are skipped."""
    from scipy import ndimage

    k = len(classes)
    q = ScribbleQuality(classes, *(np.zeros(k, np.int64) for _ in range(4)), 0,
                        masks[0].size if len(masks) else 0)
    eight = np.ones((3, 3), bool)
    for mask, scr in zip(masks, scribbles, strict=True):
        if (mask == IGNORE).all():
            continue
        q.slices += 1
        known = scr != IGNORE
        lab = scr[known]
        q.scribble_px += np.bincount(lab, minlength=IGNORE)[:k]
        q.agree_px += np.bincount(lab[lab == mask[known]], minlength=IGNORE)[:k]
        for c in range(k):
            regions, n = ndimage.label(mask == c, structure=eight)
            if n == 0:
                continue
            sizes = np.bincount(regions.ravel(), minlength=n + 1)
            big = np.flatnonzero(sizes >= REGION_MIN_PX)
            big = big[big > 0]
            hit = np.unique(regions[(scr == c) & (regions > 0)])
            q.regions[c] += len(big)
            q.regions_hit[c] += len(np.intersect1d(big, hit))
    return q
