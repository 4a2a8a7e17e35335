"""Slices back into volumes: the samples of one source volume share dataset, patient, frame and view
(``meta/``), and ``meta/slice`` orders them. 2D samples (``slice`` -1) are volumes of one sample.

:func:`slice_groups` is the one grouping; :func:`volumes` adds the voxel spacing that 3D metrics need
(``train eval``), and ``datakit export nnunet`` names and stacks its cases from the same groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datakit.store.reader import Store

VOLUME_KEY = ("dataset", "patient", "frame", "view")  # the meta/ columns every slice of a volume shares


def slice_groups(meta: Mapping[str, np.ndarray], indices: Iterable[int],
                 stackable: np.ndarray | None = None) -> list[list[int]]:
    """Samples ``indices`` grouped into volumes, each group in slice order, the groups ordered by their
    lowest sample index. ``stackable`` (a bool per store row; default ``meta/slice`` >= 0) says which samples
    may share a volume; any other sample is a group of its own."""
    if stackable is None:
        stackable = np.asarray(meta["slice"]) >= 0
    groups: dict[tuple, list[int]] = {}
    for i in (int(i) for i in indices):
        key = tuple(meta[k][i] for k in VOLUME_KEY)
        groups.setdefault(key if stackable[i] else (*key, i), []).append(i)
    ordered = sorted(groups.values(), key=min)  # by lowest sample index, whatever the request order
    return [sorted(idx, key=lambda i: int(meta["slice"][i])) for idx in ordered]


@dataclass
class Volume:
    """One volume of a store: its identity, its samples in slice order and its voxel spacing."""

    dataset: str
    patient: str
    frame: str
    view: str
    indices: np.ndarray  # sample indices in slice order
    spacing: tuple[float, ...]  # (z, row, col) mm, or (row, col) for a single 2D sample

    @property
    def key(self) -> dict[str, str]:
        return {"dataset": self.dataset, "patient": self.patient, "frame": self.frame, "view": self.view}


def volumes(store: Store, indices: np.ndarray) -> list[Volume]:
    """Group samples into volumes, each sorted by slice index, with the spacing from ``meta/`` (a slice
    spacing that is unknown counts as 1 mm between the slices of a volume)."""
    m = store.meta
    out = []
    for idx in slice_groups(m, np.asarray(indices)):
        row, col = (float(x) for x in m["spacing"][idx[0]])
        dz = float(m["slice_spacing"][idx[0]])
        spacing = (row, col) if len(idx) == 1 and not np.isfinite(dz) else (dz if np.isfinite(dz) else 1.0, row, col)
        out.append(Volume(*(str(m[k][idx[0]]) for k in VOLUME_KEY), np.asarray(idx, np.int64), spacing))
    return out
