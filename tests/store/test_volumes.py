"""Slices back into volumes: one grouping for train's 3D metrics and the nnU-Net export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from datakit.store import Store
from datakit.store.volumes import slice_groups, volumes


def _meta(rows: list[tuple[str, str, str, int]]) -> dict[str, np.ndarray]:
    dataset, patient, frame, slices = zip(*rows, strict=True)
    n = len(rows)
    return {"dataset": np.array(dataset, object), "patient": np.array(patient, object),
            "frame": np.array(frame, object), "view": np.array([""] * n, object), "slice": np.array(slices)}


def test_slices_group_by_volume_in_slice_order() -> None:
    meta = _meta([("a", "p1", "ED", 1), ("a", "p1", "ED", 0), ("a", "p1", "ES", 0), ("b", "p1", "ED", 0),
                  ("a", "p2", "", -1), ("a", "p2", "", -1), ("a", "p1", "ED", 2)])
    assert slice_groups(meta, range(7)) == [[1, 0, 6], [2], [3], [4], [5]]  # 2D samples: a volume each
    assert slice_groups(meta, [6, 4, 0]) == [[0, 6], [4]]  # ordered by first sample, whatever the request order
    alone = np.array([True, False, True, True, False, False, True])  # sample 1 may not be stacked
    assert slice_groups(meta, range(7), alone) == [[0, 6], [1], [2], [3], [4], [5]]


def test_volumes_carry_their_spacing(store: tuple[Path, list]) -> None:
    path, _ = store  # six samples: patients p0..p2, slices 0 and 1, 1.5 mm in-plane, 10 mm apart
    with Store(path) as s:
        got = volumes(s, np.arange(len(s)))
    assert [v.indices.tolist() for v in got] == [[0, 1], [2, 3], [4, 5]]
    assert all(v.spacing == (10.0, 1.5, 1.5) for v in got)
    assert got[1].key == {"dataset": "toy", "patient": "p1", "frame": "ED", "view": ""}
    assert math.isclose(got[0].spacing[0], 10.0)
