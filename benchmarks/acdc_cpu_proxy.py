"""CPU evidence on real ACDC: every training method on one store and one schedule, a scaled-down
reproduction of MAAG's protocol that fits this 2-core machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/acdc_cpu_proxy.py --out runs/proxy4 --methods all \\
        --steps 3240 --lr 1e-3 --jobs 2          # run 3's schedule, two methods at a time

The 85 real patients of ../shared/data/acdc are converted once with the MAAG split file
(manifests/acdc_maag_split.json: 35 scribble, 35 unpaired-mask and 15 validation patients; the 15
test patients are held out of ../shared). Then each method trains with the SAME schedule, network
and augmentation, and is evaluated (best checkpoint by validation Dice, 3D Dice per class and HD95
mm, raw and post-processed where the eval reports it) on the validation patients. Scaled down from
the paper to fit hours on 2 cores:

- images at 112 x 112, 3.02 mm pixels (the paper: 224 x 224, 1.51 mm): a quarter of the pixels;
- UNet width 16 (the paper: 32), MAAG's discriminator following it;
- ``--steps`` iterations of batch 12 (1080 = 20 scribble epochs; run 3: 3240 = 60; the paper: 24k =
  450); the cyclic learning rate with a half-period of 10 epochs (the paper: 20), between --lr / 10
  and --lr; validation every epoch in the second half (as the paper);
- bf16 autocast where the CPU has it natively, one torch thread per method (``--jobs`` methods run at
  once, each in its own process); a wall-time budget per method (``--budget``, minutes) as a safety
  net: a method stopped by it reports fewer iterations in the table.

The script can be stopped and run again with the same options: a finished method is not trained
again, an unfinished one continues from its last checkpoint (``train run --resume``, exact).
``--eval-only`` re-evaluates the finished runs (e.g. after the evaluation gained post-processing).
Before evaluating, each run's post-processing is decided on the validation patients (``train
postprocess --run``, for runs that did not decide it themselves). ``--export DIR`` writes each
method's best checkpoint as half-precision weights with the store's plan and that decision
(``DIR/<method>.pt``, what results/acdc_cpu_proxy/ holds) and prints its sha256. ``--reuse
M=CHECKPOINT,...`` evaluates a committed checkpoint for method M instead of training it (run 3's maag,
pce and full). Last, ``train compare`` of every evaluation (reference: maag when present) writes
OUT/compare.md and OUT/compare.png: 95 % bootstrap intervals over patients, Wilcoxon p-values.
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

REPO = Path(__file__).resolve().parents[1]
ACDC = REPO.parent / "shared" / "data" / "acdc"


def run(cmd: list[str], log: Path) -> float:
    """Run a CLI command, its stderr/stdout to ``log``; returns wall seconds (exits on failure)."""
    t = time.perf_counter()
    with log.open("w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "100"})
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t


def last_step(rd: Path) -> int:
    """The step of RUN/checkpoints/last.pt (0 when there is none)."""
    import torch

    path = rd / "checkpoints" / "last.pt"
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"]) if path.is_file() else 0


def train_all(a: argparse.Namespace, store: Path, methods: list[str], budget: dict[str, float]) -> None:
    """Train ``methods`` (``a.jobs`` at a time, each its own process with one torch thread); a finished run
    is skipped, an unfinished one resumed. Each run's RUN/train.json records its wall time."""
    bin_ = Path(sys.executable).parent
    queue = [m for m in methods if last_step(a.out / m) < a.steps]
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    while queue or running:
        while queue and len(running) < a.jobs:
            m = queue.pop(0)
            rd = a.out / m
            resume = last_step(rd) > 0
            cmd = [str(bin_ / "train"), "run", "--out", str(rd)]
            cmd += ["--resume"] if resume else [
                "--store", str(store), "--method", m, "--max-steps", str(a.steps), "--batch-size", str(a.batch),
                "--width", str(a.width), "--lr-half-period", str(a.half_period), "--lr", str(a.lr),
                "--no-progress", "--overwrite", "--log-every", "54", "--scribble-weights", a.scribble_weights]
            cmd += ["--time-budget", str(budget.get(m, a.budget_default))]
            log = (a.out / f"{m}.log").open("a")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
            running[m] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time(), log)
            print(f"{time.strftime('%H:%M')} {m}: {'resumed' if resume else 'started'}: {' '.join(cmd[1:])}",
                  flush=True)
        time.sleep(5)
        for m, (p, t0, log) in list(running.items()):
            if p.poll() is None:
                continue
            log.close()
            del running[m]
            if p.returncode != 0:
                sys.exit(f"{m} failed ({p.returncode}); see {a.out / f'{m}.log'}")
            rec = a.out / m / "train.json"
            before = json.loads(rec.read_text()) if rec.is_file() else {"wall_s": 0.0, "sessions": 0}
            wall = before["wall_s"] + time.time() - t0
            rec.write_text(json.dumps({"wall_s": wall, "sessions": before["sessions"] + 1,
                                       "command": " ".join(p.args[1:])}, indent=1))
            print(f"{time.strftime('%H:%M')} {m}: done, step {last_step(a.out / m)}, {wall / 60:.1f} min", flush=True)


def postprocess(a: argparse.Namespace, m: str) -> None:
    """Decide the run's post-processing on validation unless its best checkpoint records it already."""
    import torch

    rd = a.out / m
    best = rd / "checkpoints" / ("best.pt" if (rd / "checkpoints" / "best.pt").is_file() else "last.pt")
    if torch.load(best, map_location="cpu", weights_only=True).get("postprocessing") is None:
        run([str(Path(sys.executable).parent / "train"), "postprocess", "--run", str(rd), "--split", "valid",
             "--overwrite"], a.out / f"{m}_postprocess.log")


def export(a: argparse.Namespace, m: str, store: Path) -> str:
    """RUN/checkpoints/best.pt as half-precision weights with the store's plan: ``a.export/<m>.pt``."""
    import hashlib

    from datakit.store import Store
    from train import checkpoint as ckpt
    from train.plan import store_plan

    ck = ckpt.load(a.out / m / "checkpoints" / "best.pt")
    w = ckpt.weights_only(ck)
    if w.get("plan") is None:
        with Store(store) as s:
            w["plan"] = store_plan(s)
    a.export.mkdir(parents=True, exist_ok=True)
    dst = a.export / f"{m}.pt"
    ckpt.save(dst, {k: v for k, v in w.items() if k not in ("format", "version")})
    ckpt.load(dst)  # loads and checks as train eval will
    return hashlib.sha256(dst.read_bytes()).hexdigest()


def evaluate(a: argparse.Namespace, m: str, store: Path, reuse: Path | None = None) -> dict:
    """The run's best checkpoint on the validation patients (the exported weights with ``--export``; the
    checkpoint ``reuse`` for a method not trained here)."""
    bin_ = Path(sys.executable).parent
    rd = a.out / m
    rd.mkdir(exist_ok=True)
    which = (["--checkpoint", str(reuse), "--store", str(store)] if reuse is not None else
             ["--checkpoint", str(a.export / f"{m}.pt"), "--store", str(store)] if a.export is not None
             else ["--run", str(rd)])
    t_eval = run([str(bin_ / "train"), "eval", *which, "--split", "valid", "--json", str(rd / "valid.json"),
                  "--overwrite", "--name", m], a.out / f"{m}_eval.log")
    ev = json.loads((rd / "valid.json").read_text())
    if reuse is not None:
        return {"steps": None, "wall_s": None, "eval_s": t_eval, "samples_per_s": None, "best_step": ev.get("step"),
                "dice": ev["dice"], "hd95_mm": ev["hd95_mm"], "postprocessed": ev.get("postprocessed"),
                "valid_curve": [], "command": f"reused {reuse}"}
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "samples_per_s" in r]
    rec = json.loads((rd / "train.json").read_text()) if (rd / "train.json").is_file() else {}
    return {"steps": max(r["step"] for r in train_rows), "wall_s": rec.get("wall_s"), "eval_s": t_eval,
            "samples_per_s": sum(r["samples_per_s"] for r in train_rows) / len(train_rows),
            "best_step": ev.get("step"), "dice": ev["dice"], "hd95_mm": ev["hd95_mm"],
            "postprocessed": ev.get("postprocessed"),
            "valid_curve": [(r["step"], r["valid/dice_mean"]) for r in rows if "valid/dice_mean" in r],
            "command": rec.get("command")}


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
    ap.add_argument("--budget", default="", help="minutes per method (safety net), e.g. maag=110,ustm=300")
    ap.add_argument("--budget-default", type=float, default=360.0, help="minutes for methods --budget omits")
    ap.add_argument("--methods", default="maag,pce,full", help="comma-separated, or 'all' (every registered one)")
    ap.add_argument("--jobs", type=int, default=1, help="methods trained at once (one torch thread each)")
    ap.add_argument("--scribble-weights", default="auto", choices=("auto", "batch", "none"),
                    help="train run --scribble-weights for every method trained (auto: each method's authors')")
    ap.add_argument("--eval-only", action="store_true", help="only evaluate finished runs and print the table")
    ap.add_argument("--export", type=Path, default=None, help="write each best checkpoint as weights here")
    ap.add_argument("--reuse", default="", help="METHOD=CHECKPOINT,...: evaluate these instead of training them")
    a = ap.parse_args()
    if not a.data.is_dir():
        sys.exit(f"real data {a.data} is absent")
    from train import methods as registry

    methods = registry.names() if a.methods == "all" else a.methods.split(",")
    reuse = {k: Path(v) for k, v in (x.split("=", 1) for x in a.reuse.split(",") if x)}
    methods = [m for m in methods if m not in reuse]
    unknown = [m for m in methods if m not in registry.names()]
    if unknown:
        sys.exit(f"unknown method {unknown[0]!r}; known: {', '.join(registry.names())}")
    a.out.mkdir(parents=True, exist_ok=True)
    budget = {k: float(v) for k, v in (x.split("=") for x in a.budget.split(",") if x)}
    store = a.out / f"acdc_maag_{a.size}.h5"
    if not store.is_file():
        run([str(Path(sys.executable).parent / "datakit"), "convert", "acdc", str(a.data), "--out", str(store),
             "--split", f"file:{REPO / 'manifests' / 'acdc_maag_split.json'}", "--size", str(a.size), "--spacing",
             str(a.spacing)], a.out / "convert.log")
    if not a.eval_only:
        train_all(a, store, methods, budget)
    done = [m for m in methods if (a.out / m / "metrics.jsonl").is_file()]
    sha = {}
    for m in done:
        postprocess(a, m)
        if a.export is not None:
            sha[m] = export(a, m, store)
            print(f"{a.export / (m + '.pt')}: sha256 {sha[m]}", flush=True)
    results = {m: evaluate(a, m, store, path) for m, path in reuse.items()}
    results |= {m: {**evaluate(a, m, store), "export_sha256": sha.get(m)} for m in done}
    evals = [str(a.out / m / "valid.json") for m in results]
    if len(evals) > 1:  # paired comparison over patients: Markdown table and box plots
        ref = ["--reference", "maag"] if "maag" in results else []
        run([str(Path(sys.executable).parent / "train"), "compare", *evals, *ref, "--md", str(a.out / "compare.md"),
             "--png", str(a.out / "compare.png"), "--overwrite"], a.out / "compare.log")
    import torch

    info = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "threads": 1,
            "jobs": a.jobs, "size": a.size, "spacing": a.spacing, "width": a.width, "batch": a.batch,
            "max_steps": a.steps, "half_period": a.half_period, "lr": a.lr, "scribble_weights": a.scribble_weights}
    (a.out / "proxy.json").write_text(json.dumps({"setup": info, "results": results}, indent=1))
    if done:
        run([str(Path(sys.executable).parent / "train"), "plot", *(str(a.out / m) for m in done), "--out",
             str(a.out / "curves.png"), "--overwrite"], a.out / "plot.log")
    print("\n| method | RV Dice | MYO Dice | LV Dice | mean Dice | mean HD95 mm | post-processed Dice | "
          "post-processed HD95 mm | iterations | best at | samples/s | train wall min |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, r in results.items():
        d, h, pp = r["dice"], r["hd95_mm"], r["postprocessed"] or {}
        ppd = f"{pp['dice']['mean']:.3f}" if pp else "-"
        pph = f"{pp['hd95_mm']['mean']:.1f}" if pp else "-"
        wall = f"{r['wall_s'] / 60:.1f}" if r["wall_s"] else "-"
        rate = f"{r['samples_per_s']:.1f}" if r["samples_per_s"] else "-"
        print(f"| {m} | {d['RV']:.3f} | {d['MYO']:.3f} | {d['LV']:.3f} | {d['mean']:.3f} | {h['mean']:.1f} | {ppd} | "
              f"{pph} | {r['steps'] or '-'} | {r['best_step']} | {rate} | {wall} |")


if __name__ == "__main__":
    main()
