"""Throughput of datakit.torch.StoreDataset vs the plain h5py Dataset a user would write.

The plain one opens the file lazily per worker and reads ``f["images"][i]``, ``f["masks"][i]``,
``f["scribbles"][i]``, ``f["label_state"][i]`` and ``f["meta/patient"][i]`` per item (h5py's
hyperslab reads), returning the same dict of tensors. Both are read through the same DataLoader
(shuffled, ``--batch-size``), one whole pass over the split per round, rounds interleaved, for each
``--workers`` setting; medians of samples/s and their ratio are printed.

    python benchmarks/dataset.py [--store S.h5] [--split train] [--rounds 5] [--workers 0,2]

Without --store, the real ACDC data in ../shared/data/acdc is converted to a temporary store with the
defaults (224 x 224, manual scribbles), or 20 ACDC phantom patients where it is absent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datakit.torch import StoreDataset

REAL_ACDC = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"


class PlainH5Dataset(Dataset):
    """What one writes by hand with h5py: lazy per-process handle, hyperslab reads per item."""

    def __init__(self, path: Path, indices: np.ndarray):
        self.path, self.indices = path, indices
        self.f: h5py.File | None = None
        self.pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        if self.f is None or self.pid != os.getpid():
            self.f, self.pid = h5py.File(self.path, "r"), os.getpid()
        f, i = self.f, int(self.indices[k])
        return {"image": torch.from_numpy(f["images"][i]),
                "mask": torch.from_numpy(f["masks"][i]),
                "scribble": torch.from_numpy(f["scribbles"][i]),
                "label_state": torch.from_numpy(f["label_state"][i]),
                "index": i, "patient": f["meta/patient"][i].decode()}


def _epoch(ds: Dataset, batch: int, workers: int, seed: int) -> float:
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=False)
    t0, n = time.perf_counter(), 0
    for b in loader:
        n += len(b["index"])
    return n / (time.perf_counter() - t0)


def _make_store(tmp: Path) -> tuple[Path, str]:
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    out = tmp / "acdc.h5"
    if REAL_ACDC.is_dir():
        src, what = REAL_ACDC, f"real ACDC ({REAL_ACDC})"
    else:
        from datakit.synth.acdc import write_acdc_phantoms

        src, what = tmp / "ACDC", "20 ACDC phantom patients"
        write_acdc_phantoms(src, patients=20, seed=0, cine=False)
    convert(AcdcSource(src), ConvertOptions(out=out, workers=os.cpu_count() or 1, progress=False), log=lambda m: None)
    return out, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", default="0,2", help="comma-separated num_workers settings")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store, what = (a.store, str(a.store)) if a.store else _make_store(Path(tmp))
        ours = StoreDataset(store, split=a.split)
        plain = PlainH5Dataset(store, ours.indices)
        print(f"{what}: split {a.split!r}, {len(ours)} samples, {ours[0]['image'].shape[-1]} px, "
              f"batch {a.batch_size}, {a.rounds} rounds")
        _epoch(ours, a.batch_size, 0, 0)  # page cache warm for both
        for workers in (int(w) for w in a.workers.split(",")):
            rates: dict[str, list[float]] = {"plain": [], "ours": []}
            pair = [("plain", plain), ("ours", ours)]
            for r in range(a.rounds):
                for name, ds in pair if r % 2 == 0 else pair[::-1]:
                    rates[name].append(_epoch(ds, a.batch_size, workers, r))
            p, o = statistics.median(rates["plain"]), statistics.median(rates["ours"])
            print(f"num_workers={workers}: plain h5py {p:.0f} samples/s, StoreDataset {o:.0f} samples/s, "
                  f"ratio {o / p:.2f} (rounds: plain {', '.join(f'{x:.0f}' for x in rates['plain'])}; "
                  f"ours {', '.join(f'{x:.0f}' for x in rates['ours'])})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
