"""train/metrics.py: Dice and HD95 on shapes whose answer is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

from train.metrics import dice, hd95, volume_scores  # noqa: E402


def test_dice_and_hd95_on_known_shapes():
    a = np.zeros((1, 20, 20), bool)
    b = np.zeros((1, 20, 20), bool)
    a[0, 5:10, 5:10] = True
    b[0, 5:10, 7:12] = True  # shifted 2 columns
    assert dice(a, b) == pytest.approx(2 * 15 / 50)
    # border distances are 0 or 2 columns; more than 5 % are 2 -> HD95 = 2 columns x 1.5 mm
    assert hd95(a, b, (10.0, 1.0, 1.5)) == pytest.approx(3.0)
    assert math.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))
    assert math.isnan(hd95(a, np.zeros_like(b), (1.0, 1.0, 1.0)))
    pred = np.zeros((2, 8, 8), np.uint8)
    ref = np.full((2, 8, 8), 255, np.uint8)
    ref[:, :4] = 1
    pred[:, :4] = 1
    pred[:, 4:] = 2  # predictions where the reference is unknown do not count
    s = volume_scores(pred, ref, (5.0, 1.0, 1.0), ["bg", "a", "b"])
    assert s["dice"]["a"] == 1.0 and math.isnan(s["dice"]["b"]) and s["hd95_mm"]["a"] == 0.0
