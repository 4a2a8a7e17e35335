"""CPU evidence that maag, pce and full learn real ACDC: a scaled-down reproduction on this machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/acdc_cpu_proxy.py [--out runs/proxy]

The 85 real patients of ../shared/data/acdc are converted with the MAAG split file
(manifests/acdc_maag_split.json: 35 scribble, 35 unpaired-mask and 15 validation patients; the 15
test patients are held out of ../shared). Then each method trains with the SAME schedule and is
evaluated (best checkpoint by validation Dice, 3D Dice per class and HD95 mm) on the validation
patients. Scaled down from the paper to fit about an hour on 2 cores:

- images at 112 x 112, 3.02 mm pixels (the paper: 224 x 224, 1.51 mm): a quarter of the pixels;
- UNet width 16 (the paper: 32), the discriminator following it (16/64/128/256 filters);
- 1080 iterations of batch 12 = 20 scribble epochs (the paper: 24k = 450 epochs); the cyclic
  learning rate with a half-period of 10 epochs (the paper: 20), so the run is one full cycle,
  1e-5 -> 1e-4 -> 1e-5; validation every epoch in the second half (as the paper);
- bf16 autocast where the CPU has it natively; a wall-time budget per method (``--budget``) as a
  safety net: a method stopped by it reports fewer steps in the table.

Everything else (losses, augmentation, discriminator design, streams) is the default ``train run``.
Prints one markdown table and writes OUT/proxy.json and OUT/curves.png (``train plot``). Validation
patients both select the checkpoint and are scored: the figures are optimistic for that reason too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ACDC = REPO.parent / "shared" / "data" / "acdc"
METHODS = ("maag", "pce", "full")


def run(cmd: list[str], log: Path) -> float:
    """Run a CLI command, its stderr/stdout to ``log`` (and echoed when short); returns wall seconds."""
    t = time.perf_counter()
    with log.open("w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "100"})
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ACDC)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "proxy")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--spacing", type=float, default=3.02)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1080)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--half-period", type=int, default=10, help="cyclic LR half-period, epochs")
    ap.add_argument("--lr", type=float, default=1e-4, help="the cycle's upper bound (its lower: lr / 10)")
    ap.add_argument("--budget", default="maag=35,pce=15,full=15", help="minutes per method (safety net)")
    ap.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args()
    if not a.data.is_dir():
        sys.exit(f"real data {a.data} is absent")
    bin_ = Path(sys.executable).parent
    a.out.mkdir(parents=True, exist_ok=True)
    budget = {k: float(v) for k, v in (x.split("=") for x in a.budget.split(","))}
    store = a.out / f"acdc_maag_{a.size}.h5"
    if not store.is_file():
        run([str(bin_ / "datakit"), "convert", "acdc", str(a.data), "--out", str(store), "--split",
             f"file:{REPO / 'manifests' / 'acdc_maag_split.json'}", "--size", str(a.size), "--spacing",
             str(a.spacing)], a.out / "convert.log")
    results = {}
    for m in a.methods.split(","):
        rd = a.out / m
        cmd = [str(bin_ / "train"), "run", "--store", str(store), "--out", str(rd), "--method", m, "--max-steps",
               str(a.steps), "--batch-size", str(a.batch), "--width", str(a.width), "--lr-half-period",
               str(a.half_period), "--lr", str(a.lr), "--time-budget", str(budget.get(m, 0)), "--no-progress",
               "--overwrite",
               "--log-every", "54"]
        wall = run(cmd, a.out / f"{m}.log")
        rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
        train_rows = [r for r in rows if "samples_per_s" in r]
        valid_rows = [r for r in rows if "valid/dice_mean" in r]
        t_eval = run([str(bin_ / "train"), "eval", "--run", str(rd), "--split", "valid", "--json",
                      str(rd / "valid.json")], a.out / f"{m}_eval.log")
        ev = json.loads((rd / "valid.json").read_text())
        steps = max(r["step"] for r in train_rows)
        results[m] = {"steps": steps, "wall_s": wall, "eval_s": t_eval, "samples_per_s":
                      sum(r["samples_per_s"] for r in train_rows) / len(train_rows),
                      "best_step": ev.get("step"), "dice": ev["dice"], "hd95_mm": ev["hd95_mm"],
                      "valid_curve": [(r["step"], r["valid/dice_mean"]) for r in valid_rows],
                      "command": " ".join(cmd[1:])}
        print(f"{m}: {steps} steps in {wall / 60:.1f} min, valid mean Dice {ev['dice']['mean']:.3f}", flush=True)
    info = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "threads":
            os.environ.get("OMP_NUM_THREADS", "default"), "size": a.size, "spacing": a.spacing, "width": a.width,
            "batch": a.batch, "max_steps": a.steps, "half_period": a.half_period, "lr": a.lr}
    (a.out / "proxy.json").write_text(json.dumps({"setup": info, "results": results}, indent=1))
    run([str(bin_ / "train"), "plot", *(str(a.out / m) for m in results), "--out", str(a.out / "curves.png"),
         "--overwrite"], a.out / "plot.log")  # validation Dice and losses of the methods, one PNG
    print("\n| method | RV Dice | MYO Dice | LV Dice | mean Dice | mean HD95 mm | steps | best step | "
          "samples/s | train wall min |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, r in results.items():
        d, h = r["dice"], r["hd95_mm"]
        print(f"| {m} | {d['RV']:.3f} | {d['MYO']:.3f} | {d['LV']:.3f} | {d['mean']:.3f} | {h['mean']:.1f} | "
              f"{r['steps']} | {r['best_step']} | {r['samples_per_s']:.1f} | {r['wall_s'] / 60:.1f} |")


if __name__ == "__main__":
    main()
