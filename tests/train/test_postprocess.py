"""train/postprocess.py: the largest connected component, in 3D with full connectivity, in 2D for 2D
samples."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")


def test_largest_component_is_3d_with_full_connectivity_and_2d_for_2d_samples():
    from train.postprocess import keep_largest

    vol = np.zeros((3, 10, 10), np.uint8)
    vol[0, 2:5, 2:5] = 1  # 9 voxels on slice 0 ...
    vol[1, 5, 5] = 1  # ... touching this voxel only by a corner across slices (26-neighbourhood)
    vol[2, 8, 0] = 1  # a stray voxel: removed
    vol[2, 0:3, 7:10] = 2  # class 2 has one component: untouched
    out = keep_largest(vol, (10.0, 1.5, 1.5), [1, 2])
    assert out[1, 5, 5] == 1 and out[0, 3, 3] == 1  # corner-connected across slices: one component, kept
    assert out[2, 8, 0] == 0 and (out == 2).sum() == 9
    assert keep_largest(vol, (10.0, 1.5, 1.5), [2])[2, 8, 0] == 1  # only the classes asked for change
    # slices labelled one by one (2D) would have kept slice 2's stray voxel as its own largest part
    two_d = np.zeros((1, 6, 6), np.uint8)
    two_d[0, 0:3, 0:3], two_d[0, 5, 5] = 3, 3
    out2 = keep_largest(two_d, (1.0, 1.0), [3])  # a 2D sample: (1, H, W) with an in-plane spacing
    assert out2.shape == (1, 6, 6) and out2[0, 5, 5] == 0 and (out2 == 3).sum() == 9
