"""Per-sample time of ``Store.sample(i)``: its ChunkReader path against the h5py selection it replaced.

    .venv/bin/python benchmarks/store_sample.py STORE.h5 [STORE.h5 ...] [--passes 5]

Every sample of the store in one random order, after a warm-up pass (file in the page cache, small
tables read). Three readers, interleaved pass by pass so that a busy machine slows them alike:
``h5py``: the previous ``Store.sample`` (``f["images"][i]`` etc., ``label_state`` row by row);
``chunks, h5py label_state``: ChunkReader for the arrays only; ``Store.sample``: the current code
(ChunkReader, and ``label_state`` read once as a table). The results are checked equal first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from datakit.store import Store


def h5py_sample(s: Store, i: int) -> dict:
    """``Store.sample`` as it was before ChunkReader (datakit 8a7c8c8)."""
    f = s.file
    out = {"index": int(i), "image": f["images"][i].astype(np.float32, copy=False), "mask": f["masks"][i],
           "scribble": f["scribbles"][i], "label_state": f["label_state"][i]}
    if s.has_keypoints:
        out["keypoints"] = f["keypoints"][i]
    for k, v in s.meta.items():
        out[k] = v[i]
    return out


def chunks_h5py_label_state(s: Store, i: int) -> dict:
    out = s.sample(i)
    out["label_state"] = s.file["label_state"][i]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", type=Path, nargs="+")
    ap.add_argument("--passes", type=int, default=5)
    a = ap.parse_args()
    for path in a.stores:
        s = Store(path)
        n = len(s)
        order = [int(i) for i in np.random.default_rng(0).permutation(n)]
        readers = {"h5py": lambda i, s=s: h5py_sample(s, i),
                   "chunks, h5py label_state": lambda i, s=s: chunks_h5py_label_state(s, i),
                   "Store.sample": s.sample}
        for i in order:  # warm-up, and the same arrays from every reader
            ref = readers["h5py"](i)
            for name in ("chunks, h5py label_state", "Store.sample"):
                got = readers[name](i)
                assert all(np.array_equal(ref[k], got[k]) for k in ("image", "mask", "scribble", "label_state"))
                assert got["image"].dtype == np.float32
        times: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(a.passes):
            for name, read in readers.items():
                t = time.perf_counter()
                for i in order:
                    read(i)
                times[name].append((time.perf_counter() - t) / n * 1e6)
        d = s.file["images"]
        print(f"{path}: {n} samples, images {d.dtype} {d.shape[1:]}, filter {d.compression or 'none'}; "
              f"us per sample, median (best) of {a.passes} passes")
        base = float(np.median(times["h5py"]))
        for name, t in times.items():
            med = float(np.median(t))
            print(f"  {name:26s} {med:7.0f} ({min(t):.0f})  {base / med:4.1f}x")
        s.close()


if __name__ == "__main__":
    main()
