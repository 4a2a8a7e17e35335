"""``wsl4mis``: the scribble simulation of the WSL4MIS project (Luo et al., MICCAI 2022).

Per class region, background included: erode a large region a random 4-10 iterations (fewer when
that would erase it), skeletonise, keep ONE path along the skeleton (a random walk from a random
end point that never revisits a pixel, so branches are pruned), and dilate it inside the region.
"""

from __future__ import annotations

import numpy as np

from datakit.sample import unknown_labels
from datakit.scribbles import register
from datakit.scribbles._regions import (
    MIN_AREA,
    NEIGHBOURS,
    check_thickness,
    class_regions,
    stroke,
    thin,
)


def eroded(region: np.ndarray, rng: np.random.Generator, low: int = 4, high: int = 10) -> np.ndarray:
    """The region eroded a random ``low``-``high`` iterations, at most half its inner radius (a thin
    ring of myocardium is not "large": it keeps its shape), backing off until something is left."""
    from scipy import ndimage

    radius = ndimage.distance_transform_edt(np.pad(region, 1)).max()
    for it in range(min(int(rng.integers(low, high + 1)), int(radius // 2)), 0, -1):
        e = ndimage.binary_erosion(region, iterations=it)
        if e.sum() >= MIN_AREA:
            return e
    return region


def skeleton_path(sk: np.ndarray, rng: np.random.Generator, tries: int = 3) -> np.ndarray:
    """One non-branching path along a skeleton: the longest of ``tries`` self-avoiding random walks,
    each from a random end point."""
    from scipy import ndimage

    nb = ndimage.convolve(sk.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - 1
    ends = np.argwhere(sk & (nb == 1))
    starts = ends if len(ends) else np.argwhere(sk)  # a closed loop has no end: start anywhere
    # around a closed loop (a ring of myocardium) an annotator draws an arc, not the whole ring
    limit = int(sk.sum() * rng.uniform(0.3, 0.7)) if not len(ends) else sk.size
    paths = [_walk_skeleton(sk, starts[rng.integers(len(starts))], rng, limit) for _ in range(tries)]
    return max(paths, key=lambda p: int(p.sum()))


def _walk_skeleton(sk: np.ndarray, start: np.ndarray, rng: np.random.Generator, limit: int) -> np.ndarray:
    # plain Python sets: a step looks at 8 pixels, far too few for numpy to pay off
    pixels = set(map(tuple, np.argwhere(sk).tolist()))
    pos = (int(start[0]), int(start[1]))
    seen = {pos}
    offsets = [tuple(o) for o in NEIGHBOURS.tolist()]
    while len(seen) < limit:
        nxt = [(pos[0] + dr, pos[1] + dc) for dr, dc in offsets]
        nxt = [p for p in nxt if p in pixels and p not in seen]
        if not nxt:
            break
        pos = nxt[int(rng.integers(len(nxt)))]
        seen.add(pos)
    path = np.zeros_like(sk)
    rows, cols = zip(*seen, strict=True)
    path[list(rows), list(cols)] = True
    return path


@register("wsl4mis")
def wsl4mis(mask: np.ndarray, n_classes: int, rng: np.random.Generator, *, thickness: int = 4) -> np.ndarray:
    """Per class region: erode, skeletonise, prune to one random path, draw ``thickness`` px wide."""
    thickness = check_thickness(thickness)
    out = unknown_labels(mask.shape)
    for c, box, reg in class_regions(mask, n_classes, margin=thickness + 2):
        path = skeleton_path(thin(eroded(reg, rng)), rng)
        out[box][stroke(path, reg, thickness)] = c
    return out
