"""Checks on drawn matplotlib figures: what a reader would see overlap, what a legend promises."""

from __future__ import annotations

from itertools import combinations
from typing import Any


def overlapping(texts: list[Any], fig: Any) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty text artists whose drawn boxes intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]
    return [(a, b) for (a, box_a), (b, box_b) in combinations(shown, 2) if box_a.overlaps(box_b)]
