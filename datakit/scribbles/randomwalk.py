"""``randomwalk``: a random walk inside each class region until it has visited a set fraction of
it, thinned and dilated (the random-walk scribbles of e.g. Lee & Jeong 2020, "Scribble2Label").

The walk moves in straight runs of random length and direction, turning when it would leave the
region, so it wanders like a hand-drawn stroke rather than diffusing on the spot.
"""

from __future__ import annotations

import numpy as np

from datakit.sample import unknown_labels
from datakit.scribbles import register
from datakit.scribbles._regions import (
    check_fraction,
    check_thickness,
    class_regions,
    innermost,
    stroke,
    thin,
)

DIRECTIONS = np.array([(np.sin(a), np.cos(a)) for a in np.linspace(0, 2 * np.pi, 16, endpoint=False)])


def walk(region: np.ndarray, coverage: float, rng: np.random.Generator, max_runs: int = 4000) -> np.ndarray:
    """Pixels visited by a run-and-turn random walk started at the region's innermost pixel."""
    visited = np.zeros_like(region)
    target = max(1, int(np.ceil(coverage * region.sum())))
    h, w = region.shape
    pos = np.array(innermost(region), float)
    visited[int(pos[0]), int(pos[1])] = True
    count, runs = 1, 0
    steps = np.arange(1, max(h, w) + 1)[:, None]
    while count < target and runs < max_runs:
        runs += 1
        d = DIRECTIONS[rng.integers(len(DIRECTIONS))]
        length = int(rng.integers(3, 12))
        pts = np.rint(pos + steps[:length] * d).astype(int)
        inside = ((pts >= 0) & (pts < (h, w))).all(axis=1)
        inside[inside] = region[pts[inside, 0], pts[inside, 1]]
        n = length if inside.all() else int(np.argmin(inside))  # stop before the first step outside
        if n == 0:
            continue
        run = pts[:n]
        new = ~visited[run[:, 0], run[:, 1]]
        visited[run[:, 0], run[:, 1]] = True
        count += int(new.sum())
        pos = run[-1].astype(float)
    return visited


@register("randomwalk")
def randomwalk(mask: np.ndarray, n_classes: int, rng: np.random.Generator, *, thickness: int = 3,
               coverage: float = 0.06) -> np.ndarray:
    """Per class region (background included): walk until ``coverage`` of it is visited, thin the
    trail to one pixel, draw it ``thickness`` px wide inside the region."""
    thickness = check_thickness(thickness)
    coverage = check_fraction("coverage", coverage)
    out = unknown_labels(mask.shape)
    for c, box, reg in class_regions(mask, n_classes, margin=thickness + 2):
        out[box][stroke(thin(walk(reg, coverage, rng)), reg, thickness)] = c
    return out
