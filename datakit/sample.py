"""One 2D sample on its way into a store: arrays plus a small metadata record."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError


@dataclass
class Sample:
    image: np.ndarray  # (C, H, W) float32, normalised
    mask: np.ndarray  # (H, W) uint8, class indices, 255 unknown
    scribble: np.ndarray  # (H, W) uint8, class indices, 255 unlabelled
    label_state: np.ndarray  # (K,) int8: 1 present, 0 known absent, -1 unknown
    dataset: str
    patient: str
    frame: str = ""
    view: str = ""
    slice: int = -1
    spacing: tuple[float, float] = (math.nan, math.nan)
    slice_spacing: float = math.nan
    source: str = ""
    scribble_source: str = "none"
    keypoints: np.ndarray | None = None  # (P, 3) float32: x, y, visibility
    # Optional extra per-sample columns (same keys for every sample of a store), e.g. source_shape.
    extra: dict[str, Any] = field(default_factory=dict)


def label_state_from_mask(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class state of a dense mask: 1 if the class occurs, 0 if not, -1 if the mask is unknown."""
    return label_states_of_stack(mask[None], n_classes)[0]


def label_states_of_stack(masks: np.ndarray, n_classes: int) -> np.ndarray:
    """:func:`label_state_from_mask` for a (N, H, W) stack at once: (N, K) int8."""
    flat = masks.reshape(len(masks), -1)
    states = np.stack([(flat == c).any(axis=1) for c in range(n_classes)], axis=1).astype(np.int8)
    states[(flat == IGNORE).all(axis=1)] = -1
    return states


def checked_labels(labels: np.ndarray, path: Path, n_classes: int) -> np.ndarray:
    """A label array as uint8 class indices; DatakitError naming ``path`` for values that are not
    whole numbers in 0..n_classes-1 (float-typed label files exist: whole numbers are accepted)."""
    if labels.dtype.kind not in "iu" and not np.array_equal(labels, np.round(labels)):
        raise DatakitError("label values are not whole numbers", path)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatakitError(f"label values {np.unique(labels).tolist()} outside 0-{n_classes - 1}", path)
    return labels.astype(np.uint8)


def unknown_labels(shape: tuple[int, int]) -> np.ndarray:
    return np.full(shape, IGNORE, np.uint8)
