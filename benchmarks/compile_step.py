"""``train run --compile`` against eager: compile time and training steps/s, measured in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compile_step.py [--store STORE.h5] [--size 112]
        [--width 16] [--batch 12] [--steps 10] [--rounds 3] [--methods pce,maag] [--warm-cache]

Without --store it writes 10 ACDC phantom patients and converts them at ``--size`` px (3.02 mm at
112, the CPU proxy's size). For each method, two Trainers on the same store, both in bf16 autocast
with channels_last (``--precision bf16``), batches resident (``--data memory``): one eager, one with
``--compile``. The compiled one's first step is the compile (forward and backward of the UNet, and
for maag of the discriminator, also as the segmentor's step calls it); then both take one more
step, and ``--rounds`` alternating blocks of ``--steps`` steps are timed, eager then compiled, so
both see the same load. Prints per method: first steps, median steps/s of the blocks, and compiled
/ eager. Inductor's cache is a fresh temporary folder (a cold compile, as on a fresh machine)
unless ``--warm-cache`` keeps the default one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_store(tmp: Path, patients: int, size: int) -> Path:
    bin_ = Path(sys.executable).parent
    subprocess.run([bin_ / "datakit", "synth", "acdc", tmp / "acdc", "--patients", str(patients), "--no-cine"],
                   check=True, capture_output=True)
    out = tmp / f"acdc{size}.h5"
    subprocess.run([bin_ / "datakit", "convert", "acdc", tmp / "acdc", "--out", out, "--size", str(size),
                    "--spacing", f"{1.51 * 224 / size:.2f}"], check=True, capture_output=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path)
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=3, help="timed blocks per mode, alternating")
    ap.add_argument("--methods", default="pce,maag")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warm-cache", action="store_true", help="keep inductor's default cache (no cold compile)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not a.warm_cache:  # before torch is imported: inductor reads it then
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp / "inductor")
        import torch
        import torch._dynamo

        from datakit.store import Store
        from train.config import TrainConfig
        from train.loop import Trainer

        store = a.store or make_store(tmp, a.patients, a.size)
        h, w = Store(store).image_size
        print(f"store {store}: {h} x {w}; width {a.width}, batch {a.batch}, bf16 autocast + channels_last, "
              f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), inductor cache "
              f"{'default (warm)' if a.warm_cache else 'fresh (cold)'}", flush=True)
        sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
        for method in a.methods.split(","):
            torch._dynamo.reset()
            trainers, its, first = {}, {}, {}
            for mode in ("eager", "compiled"):
                cfg = TrainConfig(store=store, out=tmp / method / mode, method=method, max_steps=10**6,
                                  batch_size=a.batch, width=a.width, workers=0, valid_split="", progress=False,
                                  device=a.device, precision="bf16", data="memory", compile=mode == "compiled")
                tr = Trainer(cfg, log=lambda m: print("  log:", m, flush=True))
                tr.prepare_nets()
                trainers[mode], its[mode] = tr, tr.batches()
                first[mode] = []
                for _ in range(2):  # the compiled one's first step compiles
                    t = time.perf_counter()
                    tr.step_fn(tr.ctx, next(its[mode])[0])
                    sync()
                    first[mode].append(time.perf_counter() - t)
            rates: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(a.rounds):
                for mode, tr in trainers.items():
                    sync()
                    t = time.perf_counter()
                    for _ in range(a.steps):
                        tr.step_fn(tr.ctx, next(its[mode])[0])
                    sync()
                    rates[mode].append(a.steps / (time.perf_counter() - t))
            med = {m: statistics.median(r) for m, r in rates.items()}
            for mode in ("eager", "compiled"):
                print(f"{method} {mode:8s}: first steps {first[mode][0]:6.1f} s, {first[mode][1]:5.2f} s; "
                      f"{med[mode]:.3f} it/s median of {', '.join(f'{r:.3f}' for r in rates[mode])}", flush=True)
            print(f"{method} compile time (first compiled step - median eager step): "
                  f"{first['compiled'][0] - 1 / med['eager']:.1f} s; compiled / eager steps/s: "
                  f"{med['compiled'] / med['eager']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
