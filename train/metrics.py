"""3D segmentation metrics per volume: Dice and HD95 in mm (medpy's definitions).

Slices of one volume (same dataset, patient, frame, view) are stacked in slice order; the voxel
spacing is (meta/slice_spacing, meta/spacing). 2D samples (slice -1) are volumes of one slice and
use the in-plane spacing only. Pixels unknown in the reference (255) are left out of both.
Undefined values are NaN and left out of means: Dice when a class is absent from both reference
and prediction, HD95 when either is empty.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from datakit.constants import IGNORE
from datakit.store.volumes import Volume, volumes  # noqa: F401 (train.metrics.volumes: the grouping is datakit's)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = int(pred.sum()), int(ref.sum())
    if p + r == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(pred, ref).sum()) / (p + r)


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distances from a's border voxels to b's border (medpy's __surface_distances)."""
    fp = ndimage.generate_binary_structure(a.ndim, 1)
    a_border = a ^ ndimage.binary_erosion(a, structure=fp, iterations=1)
    b_border = b ^ ndimage.binary_erosion(b, structure=fp, iterations=1)
    dt = ndimage.distance_transform_edt(~b_border, sampling=spacing)
    return dt[a_border]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    if not pred.any() or not ref.any():
        return float("nan")
    d = np.hstack([_surface_distances(pred, ref, spacing), _surface_distances(ref, pred, spacing)])
    return float(np.percentile(d, 95))


def volume_scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], classes: list[str],
                  with_hd: bool = True) -> dict[str, dict[str, float]]:
    """Per foreground class Dice (and HD95 mm) of one volume; ``pred``/``ref`` (Z, H, W) or (H, W)."""
    if pred.ndim == 3 and len(spacing) == 2:
        pred, ref = pred[0], ref[0]
    known = ref != IGNORE
    out: dict[str, dict[str, float]] = {"dice": {}, "hd95_mm": {}}
    for c, name in enumerate(classes):
        if c == 0:
            continue
        p, r = (pred == c) & known, ref == c
        out["dice"][name] = dice(p, r)
        if with_hd:
            out["hd95_mm"][name] = hd95(p, r, spacing)
    if not with_hd:
        del out["hd95_mm"]
    return out


def _mean(values: list[float]) -> float | None:
    a = np.asarray(values, np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else None


def _std(values: list[float]) -> float | None:
    a = np.asarray(values, np.float64)
    a = a[np.isfinite(a)]
    return float(a.std()) if len(a) else None


def summarise(rows: list[dict], classes: list[str], metric: str) -> tuple[dict, dict]:
    """Mean and std over volumes per class; "mean" is the mean over volumes of the per-volume class mean."""
    means: dict[str, float | None] = {}
    stds: dict[str, float | None] = {}
    for name in classes[1:]:
        vals = [r[metric][name] for r in rows]
        means[name], stds[name] = _mean(vals), _std(vals)
    per_volume = [_mean([r[metric][n] for n in classes[1:]]) for r in rows]
    per_volume = [np.nan if v is None else v for v in per_volume]
    means["mean"], stds["mean"] = _mean(per_volume), _std(per_volume)
    return means, stds
