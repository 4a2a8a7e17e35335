"""``skeleton``: the medial line of each class region, closed, dilated and kept inside the region.

The simplest published recipe (e.g. Can et al. 2018, Valvano et al. 2021's synthetic baselines):
an annotator's stroke tends to run along the middle of a structure, which is its skeleton.
"""

from __future__ import annotations

import numpy as np

from datakit.sample import unknown_labels
from datakit.scribbles import register
from datakit.scribbles._regions import check_thickness, class_regions, stroke, thin


@register("skeleton")
def skeleton(mask: np.ndarray, n_classes: int, rng: np.random.Generator, *, thickness: int = 2) -> np.ndarray:
    """Scribble = skeleton of every class region (background included), ``thickness`` px wide.

    Deterministic: ``rng`` is not used (the skeleton of a mask is unique).
    """
    from scipy import ndimage

    thickness = check_thickness(thickness)
    out = unknown_labels(mask.shape)
    for c, box, reg in class_regions(mask, n_classes, margin=thickness + 2):
        # closing joins the one-pixel gaps thinning leaves at sharp corners
        line = ndimage.binary_closing(thin(reg), structure=np.ones((3, 3), bool)) & reg
        out[box][stroke(line, reg, thickness)] = c
    return out
