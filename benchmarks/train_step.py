"""Samples/s of the training loader alone and of full training steps, on the device at hand.

    .venv/bin/python benchmarks/train_step.py [--store STORE.h5] [--patients 10] [--batches 200]

Without --store it writes ACDC phantoms and converts them at 224 x 224 (1.51 mm) in a temporary
folder. Loader figures: samples delivered per second by the batched loader (``train.data``) for
the scribble stream (image + scribble + label_state per sample), with 0 and 2 workers, against
the naive path (one ``Store.sample(i)`` per sample, random order) measured in the same run.
Train-step figures: scribble samples per second of complete maag / pce iterations (augmentation,
forward, backward, optimiser steps) at batch 12 and the MAAG widths, in fp32 and in bf16 autocast
(channels_last), measured in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datakit.store import Store
from train.config import TrainConfig
from train.data import make_loader
from train.loop import Trainer
from train.methods import get, resolve_streams
from train.methods.streams import Streams


def make_store(tmp: Path, patients: int) -> Path:
    bin_ = Path(sys.executable).parent
    subprocess.run([bin_ / "datakit", "synth", "acdc", tmp / "acdc", "--patients", str(patients), "--no-cine"],
                   check=True, capture_output=True)
    out = tmp / "acdc224.h5"
    subprocess.run([bin_ / "datakit", "convert", "acdc", tmp / "acdc", "--out", out], check=True, capture_output=True)
    return out


def loader_rate(store: Path, streams: Streams, kinds: dict[str, str], batch: int, workers: int, batches: int) -> float:
    loader, _ = make_loader(store, streams, kinds, batch, seed=0, workers=workers)
    it = iter(loader)
    for _ in range(max(2, workers * 2)):  # start-up: workers fork and open the file
        next(it)
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        b = next(it)
        n += len(b[next(iter(kinds))]["images"])
    return n / (time.perf_counter() - t)


def gzip_copy(store: Path, out: Path) -> Path:
    """The same store with images gzip-1 + shuffle (`--image-compression gzip`), masks as they are."""
    import h5py

    with h5py.File(store) as src, h5py.File(out, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for name in src:
            if name == "images":
                d = dst.create_dataset("images", data=src["images"][()], chunks=src["images"].chunks,
                                       compression="gzip", compression_opts=1, shuffle=True)
                for k, v in src["images"].attrs.items():
                    d.attrs[k] = v
            else:
                src.copy(src[name], dst, name=name)
    return out


def naive_rate(store: Path, idx: np.ndarray, samples: int) -> float:
    s = Store(store)
    rng = np.random.default_rng(0)
    pick = rng.choice(idx, samples)
    s.sample(int(pick[0]))
    t = time.perf_counter()
    for i in pick:
        s.sample(int(i))
    return samples / (time.perf_counter() - t)


def step_rate(store: Path, method: str, out: Path, steps: int, device: str, precision: str = "auto") -> float:
    """Scribble samples/s of complete iterations, batches resident on the device (``--data memory``)."""
    cfg = TrainConfig(store=store, out=out / method, method=method, max_steps=10**6, batch_size=12,
                      workers=0, valid_split="", progress=False, device=device, precision=precision, data="memory")
    tr = Trainer(cfg, log=lambda m: None)
    tr.prepare_nets()
    batches = tr.batches()
    tr.step_fn(tr.ctx, next(batches)[0])  # warm-up (allocations, cudnn autotune)
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        tr.step_fn(tr.ctx, next(batches)[0])
    sync()
    return steps * 12 / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path)
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--steps", type=int, default=3, help="training steps timed per method (0: loader only)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        store = a.store or make_store(tmp, a.patients)
        s = Store(store)
        streams = resolve_streams(s, "pce")
        kinds = get("pce").streams
        h, w = s.image_size
        print(f"store {store}: {len(s)} samples, {h} x {w}; scribble stream {len(streams.indices['scribble'])} samples")
        naive = naive_rate(store, streams.indices["scribble"], 500)
        print(f"naive Store.sample(i), random order:      {naive:8.0f} samples/s")
        for workers in (0, 2):
            r = loader_rate(store, streams, kinds, 12, workers, a.batches)
            print(f"batched loader, {workers} workers, batch 12:     {r:8.0f} samples/s  ({r / naive:.1f}x naive)")
        packed = gzip_copy(store, tmp / "gzip.h5")
        r = loader_rate(packed, streams, kinds, 12, 2, a.batches)
        print(f"batched loader, 2 workers, gzip images:   {r:8.0f} samples/s  ({r / naive:.1f}x naive)")
        maag = resolve_streams(s, "maag")
        r = loader_rate(store, maag, get("maag").streams, 12, 2, a.batches // 2)
        print(f"maag requests (3 streams), 2 workers:     {r:8.0f} scribble samples/s ({3 * r:.0f} reads/s)")
        where = "cuda" if torch.cuda.is_available() and a.device != "cpu" else "cpu"
        for method in ("pce", "maag") if a.steps > 0 else ():
            rates = {p: step_rate(store, method, tmp, a.steps, a.device, p) for p in ("fp32", "bf16")}
            for p, r in rates.items():
                print(f"{method} training step, batch 12, {p}:      {r:8.1f} samples/s ({r / 12:.2f} it/s) on {where}")
            print(f"{method} bf16 / fp32 speed:                {rates['bf16'] / rates['fp32']:8.2f}x")


if __name__ == "__main__":
    main()
