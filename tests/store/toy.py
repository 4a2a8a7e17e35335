"""A toy store for the store tests: six 16 x 16 samples of three patients, every array known."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from datakit.sample import Sample, label_state_from_mask
from datakit.store import StoreWriter
from datakit.store.chunks import ImageFormat

CLASSES = ["background", "a", "b"]


def toy_samples(n: int, rng: np.random.Generator, size: int = 16) -> list[Sample]:
    out = []
    for i in range(n):
        m = rng.integers(0, 3, (size, size)).astype(np.uint8)
        sc = np.full((size, size), 255, np.uint8)
        sc[2, 2:8] = m[2, 2:8]
        out.append(Sample(image=rng.normal(size=(1, size, size)).astype(np.float32), mask=m, scribble=sc,
                          label_state=label_state_from_mask(m, 3), dataset="toy", patient=f"p{i // 2}",
                          frame="ED", slice=i % 2, spacing=(1.5, 1.5), slice_spacing=10.0,
                          source=f"p{i // 2}.nii.gz", scribble_source="manual"))
    return out


def write_toy(path: Path, samples: list[Sample], *, compression: str = "none", dtype: str = "float32", **kw) -> Path:
    with StoreWriter(path, classes=CLASSES, image_size=(16, 16), normalization="zscore",
                     image_format=ImageFormat(dtype, compression), **kw) as w:
        w.append(samples[:3])
        w.append(samples[3:])
        ids = sorted({s.patient for s in samples})
        w.set_patients({"id": ids, "age": [float(i) for i in range(len(ids))], "sex": ["F"] * len(ids)})
        w.set_splits({"train": [0, 1], "valid": [2, 3], "test": [4, 5]}, method="random", seed=0,
                     ratios=[0.4, 0.3, 0.3])
    return path


def legacy_store(path: Path) -> Path:
    """A store as conversions have written it so far: ``notes``/``skipped`` set to [] through
    StoreWriter.set_attr, which h5py stores as an empty float64 array (written here with h5py itself, so
    the store stays legacy once the writer is fixed)."""
    samples = toy_samples(6, np.random.default_rng(0))
    with StoreWriter(path, classes=CLASSES, image_size=(16, 16), normalization="zscore") as w:
        w.append(samples)
        w.set_patients({"id": sorted({s.patient for s in samples})})
        w.set_splits({"train": [0, 1, 2, 3], "valid": [4, 5]}, method="random", seed=0, ratios=[0.7, 0.3])
    with h5py.File(path, "r+") as f:
        f.attrs["skipped"] = []
        f.attrs["notes"] = []
        assert isinstance(f.attrs["notes"], np.ndarray) and f.attrs["notes"].size == 0  # the legacy form
    return path
