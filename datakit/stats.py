"""Store statistics (``datakit stats``): per split, per class coverage, label states, intensities.

One streaming pass over the store in chunks collects small per-sample figures (class pixel counts,
intensity sums, a fixed systematic subsample of intensities); every split's statistics are then
aggregated from those, so memory stays bounded whatever the store's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datakit.constants import IGNORE
from datakit.splits import split_order
from datakit.store import Store

PERCENTILE_PIXELS = 4_000_000  # intensities kept for percentiles; exact while the store is smaller


@dataclass
class SampleFigures:
    """Per-sample figures of one pass over the store (index i = the i-th sample streamed)."""

    indices: np.ndarray  # (N,) store indices
    mask_px: np.ndarray  # (N, K) pixels of each class in the mask
    mask_known: np.ndarray  # (N,) the sample carries a mask (not all 255)
    scribble_px: np.ndarray  # (N, K)
    scribble_known: np.ndarray  # (N,)
    label_state: np.ndarray  # (N, K)
    pixels: int  # H * W
    sum: np.ndarray  # (N, C) intensity sums, float64
    sumsq: np.ndarray  # (N, C)
    subsample: list[np.ndarray]  # per sample, intensities of every stride-th pixel (all channels)


def _class_counts(labels: np.ndarray, k: int) -> np.ndarray:
    """(n, H, W) uint8 -> (n, K) pixel counts per class, one bincount for the whole block."""
    n = labels.shape[0]
    flat = labels.reshape(n, -1).astype(np.int64) + 256 * np.arange(n)[:, None]
    return np.bincount(flat.ravel(), minlength=256 * n).reshape(n, 256)[:, :k]


def collect(store: Store, indices: np.ndarray | None = None, chunk: int = 256) -> SampleFigures:
    """Stream ``store`` (all samples, or ``indices``) once and gather per-sample figures."""
    f, k = store.file, len(store.classes)
    idx = np.arange(len(store)) if indices is None else np.sort(np.asarray(indices, np.int64))
    h, w = store.image_size
    c = store.channels
    stride = max(1, int(np.ceil(len(idx) * c * h * w / PERCENTILE_PIXELS)))
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("mask_px", "mask_known", "scribble_px",
                                                               "scribble_known", "sum", "sumsq")}
    subsample: list[np.ndarray] = []
    for part, masks in store.iter_chunks("masks", idx, chunk):
        scribbles = f["scribbles"][part] if not _contiguous(part) else f["scribbles"][part[0]:part[-1] + 1]
        images = f["images"][part] if not _contiguous(part) else f["images"][part[0]:part[-1] + 1]
        parts["mask_px"].append(_class_counts(masks, k))
        parts["mask_known"].append((masks != IGNORE).reshape(len(part), -1).any(axis=1))
        parts["scribble_px"].append(_class_counts(scribbles, k))
        parts["scribble_known"].append((scribbles != IGNORE).reshape(len(part), -1).any(axis=1))
        x = images.astype(np.float64).reshape(len(part), c, -1)
        parts["sum"].append(x.sum(axis=2))
        parts["sumsq"].append((x * x).sum(axis=2))
        subsample.extend(np.ascontiguousarray(images.reshape(len(part), -1)[:, ::stride]))  # no view of the chunk
    empty = {"mask_px": (0, k), "scribble_px": (0, k), "mask_known": (0,), "scribble_known": (0,), "sum": (0, c),
             "sumsq": (0, c)}  # an empty split: each figure with its own shape
    cat = {key: np.concatenate(v) if v else np.zeros(empty[key]) for key, v in parts.items()}
    return SampleFigures(idx, cat["mask_px"], cat["mask_known"].astype(bool), cat["scribble_px"],
                         cat["scribble_known"].astype(bool), f["label_state"][()][idx], h * w,
                         cat["sum"], cat["sumsq"], subsample)


def _contiguous(part: np.ndarray) -> bool:
    return bool(len(part)) and int(part[-1] - part[0] + 1) == len(part)


def _mean_std(values: np.ndarray) -> dict[str, float | None]:
    """Mean and population standard deviation; None over no sample."""
    if not len(values):
        return {"mean": None, "std": None}
    return {"mean": float(values.mean()), "std": float(values.std())}


def split_stats(store: Store, figs: SampleFigures, rows: np.ndarray) -> dict[str, Any]:
    """Statistics of the samples at positions ``rows`` of ``figs``."""
    classes = store.classes
    sel = figs.indices[rows]
    patients = store.meta["patient"][sel]
    mask_pct = 100.0 * figs.mask_px[rows] / figs.pixels
    scr_pct = 100.0 * figs.scribble_px[rows] / figs.pixels
    mk, sk = figs.mask_known[rows], figs.scribble_known[rows]
    states = figs.label_state[rows]
    per_class = {}
    scribbled = figs.scribble_px[rows] > 0
    for j, name in enumerate(classes):
        present = int((states[:, j] == 1).sum())
        per_class[name] = {
            "mask_coverage_pct": _mean_std(mask_pct[mk, j]),
            "scribble_coverage_pct": _mean_std(scr_pct[sk, j]),
            "samples_with_class": present,
            "samples_with_scribble": int(scribbled[:, j].sum()),
            "label_state": {"present": present, "absent": int((states[:, j] == 0).sum()),
                            "unknown": int((states[:, j] == -1).sum())},
        }
    n_px = figs.pixels * len(rows) * figs.sum.shape[1]
    sub = np.concatenate([figs.subsample[r] for r in rows]) if len(rows) else np.zeros(0, np.float32)
    intensity: dict[str, float | None] = dict.fromkeys(("mean", "std", "p1", "p99"))  # None: no sample
    if n_px:
        mean = figs.sum[rows].sum() / n_px
        var = figs.sumsq[rows].sum() / n_px - mean * mean
        intensity.update(mean=float(mean), std=float(np.sqrt(max(var, 0.0))))
    if len(sub):
        p1, p99 = np.percentile(sub, [1, 99])
        intensity.update(p1=float(p1), p99=float(p99))
    spacing = store.meta["spacing"][sel]
    finite = spacing[np.isfinite(spacing).all(axis=1)]
    return {
        "samples": int(len(rows)),
        "patients": int(len(set(patients))),
        "samples_with_mask": int(mk.sum()),
        "samples_with_scribble": int(sk.sum()),
        "classes": per_class,
        "intensity": intensity,
        "spacing_mm": ({"median": [float(x) for x in np.median(finite, axis=0)],
                        "min": [float(x) for x in finite.min(axis=0)],
                        "max": [float(x) for x in finite.max(axis=0)]} if len(finite) else None),
    }


def store_stats(path: str | Path, split: str | None = None, chunk: int = 256) -> tuple[dict[str, Any], SampleFigures]:
    """``{"classes", "image_size", "channels", "splits": {"all" | name: {...}}}`` and the per-sample
    figures (for plots). With ``split``, only that split is read and reported."""
    with Store(path) as s:
        if split not in (None, "all"):
            figs = collect(s, s.indices(split), chunk)
            groups = {split: np.arange(len(figs.indices))}
        else:
            figs = collect(s, None, chunk)
            groups = {"all": np.arange(len(s))}
            for name in split_order(s.splits):  # training splits first, then valid, test
                groups[name] = s.splits[name]  # positions == store indices when all are read
        return {
            "store": str(s.path),
            "classes": s.classes,
            "image_size": list(s.image_size),
            "channels": s.channels,
            "scribble_sources": sorted(set(s.meta["scribble_source"])),
            "splits": {name: split_stats(s, figs, rows) for name, rows in groups.items()},
        }, figs


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as None: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
