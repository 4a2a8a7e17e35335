"""Re-generate the scribbles of an existing store: ``datakit scribble STORE --algo ALGO --out NEW``.

The store is streamed in chunks; images, masks, label states, keypoints, metadata, patients,
splits and root attributes are copied, and each sample's scribble is drawn from its stored mask
with the same per-sample seed a conversion with ``--scribbles synth:ALGO`` uses, so both give the
same scribbles. The new store is written next to ``out`` and renamed into place when complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.safe_io import same_file
from datakit.sample import Sample
from datakit.scribbles import check_params, sample_seed, stored_identity, synthesize
from datakit.store import Store, StoreWriter
from datakit.store.check import check_label_values
from datakit.store.chunks import ImageFormat
from datakit.store.contract import META_COLUMNS, ROOT_ATTRS
from datakit.store.writer import writing

# written afresh by StoreWriter or by this module
_OWN_ATTRS = {*ROOT_ATTRS, "scribble_synthesis"}


@dataclass
class RescribbleReport:
    out: Path
    samples: int
    synthesized: int  # samples with a mask to draw from
    seconds: float

    def summary(self) -> str:
        return (f"wrote {self.out}: {self.samples} samples, {self.synthesized} with synthetic scribbles, "
                f"{self.seconds:.1f} s")


def rescribble(src: str | Path, out: str | Path, algo: str, *, seed: int = 0, params: dict[str, Any] | None = None,
               overwrite: bool = False, command: str = "", chunk: int = 128, workers: int = 1,
               progress: Callable[[int], None] | None = None) -> RescribbleReport:
    """Write ``out``: ``src`` with every scribble re-drawn by ``algo`` from its mask, drawn by
    ``workers`` processes (the store itself is read and written by this one only)."""
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    params = dict(params or {})
    check_params(algo, params)
    if same_file(out, src):  # by identity: a hard or symbolic link to the input is the input
        raise DatakitError(f"--out must differ from the input store {src} (it is read while writing)", out)
    synthesized = 0
    with ExitStack() as stack:
        stack.enter_context(writing(out, overwrite))  # the output's exclusive lock, for the whole run
        pool = stack.enter_context(_pool(workers)) if workers > 1 else None
        s = stack.enter_context(Store(src))
        check_label_values(s, ("masks",))  # scribbles drawn from out-of-range labels would be invalid
        f, k = s.file, len(s.classes)
        meta = s.meta
        extra = [name for name in meta if name not in META_COLUMNS]
        attrs = {key: value for key, value in s.attrs.items() if key not in _OWN_ATTRS}
        label = f"synthetic:{algo}"
        with StoreWriter(out, classes=s.classes, image_size=s.image_size, channels=s.channels,
                         command=command, overwrite=overwrite,
                         normalization=str(f["images"].attrs.get("normalization", "")),
                         keypoint_names=s.keypoint_names or None, attrs=attrs,
                         image_format=ImageFormat.like(f["images"])) as w:
            for idx, masks in s.iter_chunks("masks", chunk=chunk):
                lo, hi = int(idx[0]), int(idx[-1]) + 1
                images, states = f["images"][lo:hi], f["label_state"][lo:hi]
                keypoints = f["keypoints"][lo:hi] if s.has_keypoints else None
                jobs = [(masks[j], k, algo, sample_seed(seed, stored_identity(meta, i)), params)
                        for j, i in enumerate(idx)]
                scribbles = list(pool.map(_draw, jobs, chunksize=8) if pool else map(_draw, jobs))
                synthesized += int((masks != IGNORE).reshape(len(idx), -1).any(axis=1).sum())
                batch = []
                for j, i in enumerate(idx):
                    batch.append(Sample(
                        image=images[j], mask=masks[j], scribble=scribbles[j],
                        label_state=states[j], dataset=meta["dataset"][i], patient=meta["patient"][i],
                        frame=meta["frame"][i], view=meta["view"][i], slice=int(meta["slice"][i]),
                        spacing=tuple(meta["spacing"][i]), slice_spacing=float(meta["slice_spacing"][i]),
                        source=meta["source"][i], scribble_source=label,
                        keypoints=None if keypoints is None else keypoints[j],
                        extra={name: meta[name][i] for name in extra}))
                w.append(batch)
                if progress:
                    progress(len(idx))
            if s.patients:
                w.set_patients({key: list(col) for key, col in s.patients.items()})
            if s.splits:
                sa = s.split_attrs  # seed -1 (none) is copied as it is
                w.set_splits(s.splits, method=str(sa.get("method", "")), seed=int(sa.get("seed", -1)),
                             ratios=list(sa.get("ratios", [])))
            w.set_attr("scribble_synthesis", {"algo": algo, "seed": seed, **params})
            n = w.n
    return RescribbleReport(out, n, synthesized, time.perf_counter() - t0)


def _draw(job: tuple[np.ndarray, int, str, int, dict[str, Any]]) -> np.ndarray:
    mask, k, algo, seed, params = job
    return synthesize(mask, k, algo, seed, **params)


def _pool(workers: int) -> ProcessPoolExecutor:
    # Forked workers inherit the imported algorithms. They are started now, before any HDF5 file
    # is open, so no child holds a handle on either store; they die with this process, even on kill -9.
    from datakit.pipeline import process_pool

    pool = process_pool(workers)
    pool.submit(int).result()
    return pool
