"""The whole ACDC reproduction (maag, pce, full at the paper's schedule) as one device command.

Here (a CPU machine with ../shared/data), once, to prepare what travels (only the working tree does,
64 MiB at most, and ../shared does not):

    .venv/bin/python benchmarks/gpu_acdc.py pack          # -> .device/ (ignored by git): ~47 MiB store + wheels

On the GPU machine (the ``device`` tool's ``run``, with ``carry: [".device"]``), one command:

    bash benchmarks/gpu_acdc.sh                           # = python3 benchmarks/gpu_acdc.py run --out $OUT
    COMPILE=1 bash benchmarks/gpu_acdc.sh                 # the same with train run --compile (CPU-measured only)

``pack`` converts ../shared/data/acdc with the MAAG split (35 scribble, 35 unpaired-mask, 15
validation patients) and writes a transport copy (``datakit.store.pack``): images float16 rounded to
7 mantissa bits (bf16's precision, which is what the bf16 network's first convolution sees anyway;
largest change ~0.009 on images normalised to about -1..3.5), gzip 9, and the images of the
unpaired-mask patients set to 0 (maag reads only their masks; pce and full train on the scribble
patients). It also downloads the pure-Python wheels ``train`` needs that the device lacks
(pydantic and its three dependencies, cp312 manylinux). nibabel, SimpleITK and isal are not needed
by ``train run`` / ``train eval`` (tests/test_gpu_acdc.py runs them with those imports blocked).

``run`` prints the environment, checks the store's sha256, runs the three methods (24k iterations,
batch 12, the default MAAG settings; concurrently by default: each alone leaves most of an H200
idle) with a ``--time-budget`` that keeps the whole command inside its limit, evaluates the best and
last checkpoints on the validation patients (3D Dice per class, HD95 mm), measures each method's
FLOP per iteration (torch's FLOP counter, forward + backward of every network) for MFU against the
measured bf16 peak of the GPU it finds (``PEAKS``: an H100's 798 TFLOP/s, an H200's 788, each a
bf16 8192^3 matrix product on that kind of device machine), prints one table last and writes to
OUT: results.json, each method's metrics.jsonl and its best checkpoint as half-precision weights
(loadable by ``train eval`` and ``train predict``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEVICE = REPO / ".device"
STORE = DEVICE / "acdc_maag_gpu.h5"
WHEELS = DEVICE / "wheels"
# bf16 dense FLOP/s measured on each kind of device machine (an 8192^3 matrix product), by GPU name
PEAKS = {"H100": 798e12, "H200": 788e12}


def peak_flops(device_name: str) -> float | None:
    """The measured bf16 peak of the GPU named ``device_name`` (torch.cuda.get_device_name), or None."""
    return next((v for k, v in PEAKS.items() if k in device_name), None)
METHODS = ("maag", "pce", "full")
SHARE = {"maag": 2.0, "pce": 1.0, "full": 1.0}  # sequential budgets: a maag iteration costs about twice the others
WHEEL_PINS = ("pydantic==2.14.4", "pydantic_core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- here: prepare what travels ----------------------------------------------------------------------
TRAVEL_LIMIT_MIB = 64.0  # the device tool sends the working tree: tracked and untracked-not-ignored files, carry


def travel_check(repo: Path, carry: Path, limit_mib: float = TRAVEL_LIMIT_MIB) -> str | None:
    """None when the working tree of ``repo`` plus ``carry`` fits what the device call sends; else what to
    set aside (the committed CPU-proxy weights are not needed on the device)."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    # a set: a carried file that git does not ignore is listed by both, and is sent once
    mib = {p: p.stat().st_size / 2**20 for p in [*(repo / f for f in listed if f), *carry.rglob("*")] if p.is_file()}
    total = sum(mib.values())
    if total <= limit_mib:
        return None
    weights = repo / "results" / "acdc_cpu_proxy"
    aside = sum(v for p, v in mib.items() if weights in p.parents)
    return (f"the working tree and {carry.name}/ come to {total:.1f} MiB, over the device call's "
            f"{limit_mib:g} MiB by {total - limit_mib:.1f}: set the CPU-proxy weights aside for the call "
            f"({aside:.1f} MiB: mv results/acdc_cpu_proxy /tmp/, and back afterwards)")


def pack(a: argparse.Namespace) -> None:
    from datakit.store import Store, validate_store
    from datakit.store.pack import pack_store

    DEVICE.mkdir(exist_ok=True)
    full = DEVICE / "acdc_maag_full.h5"
    if not full.is_file():
        subprocess.run([str(Path(sys.executable).parent / "datakit"), "convert", "acdc", str(a.data), "--out",
                        str(full), "--split", f"file:{REPO / 'manifests' / 'acdc_maag_split.json'}"], check=True)
    s = Store(full)
    r = pack_store(full, STORE, mantissa_bits=a.mantissa_bits, zero_images=s.splits["train_masks"],
                   why="maag reads only the masks of train_masks; pce and full train on train_scribble",
                   overwrite=True)
    problems = validate_store(STORE)
    if problems:
        sys.exit(f"packed store is invalid: {problems[:3]}")
    (DEVICE / "acdc_maag_gpu.sha256").write_text(sha256(STORE) + "\n")
    full.unlink()
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version",
                    "3.12", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--implementation", "cp", "--no-deps", "-d", str(WHEELS), *WHEEL_PINS], check=True)
    total = sum(p.stat().st_size for p in DEVICE.rglob("*") if p.is_file()) / 2**20
    print(f"packed {STORE.relative_to(REPO)}: {r['dst_mib']:.1f} MiB (from {r['src_mib']:.1f}), largest image change "
          f"{r['largest_change']:.3g}; .device/ holds {total:.1f} MiB (carry it: carry=[\".device\"])")
    over = travel_check(REPO, DEVICE)
    print(over or f"the working tree and .device/ fit the device call ({TRAVEL_LIMIT_MIB:.0f} MiB)")


# -- there: run -------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    try:
        env["nvidia-smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
    except OSError:
        env["nvidia-smi"] = "absent"
    return env


def iteration_flops(store: Path, method: str, width: int, batch: int, device: str) -> float:
    """FLOP of one training iteration (forward + backward of every network), counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from train.config import TrainConfig
    from train.loop import Trainer

    cfg = TrainConfig(store=store, out=Path("/tmp/flops") / method, method=method, width=width, batch_size=batch,
                      valid_split="", progress=False, device=device, data="memory")
    tr = Trainer(cfg, log=lambda m: None)
    batch_ = next(tr.batches())[0]
    with FlopCounterMode(display=False) as fc:
        tr.step_fn(tr.ctx, batch_)
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
    return float(fc.get_total_flops())


def train_cmd(store: Path, rd: Path, method: str, a: argparse.Namespace, budget_min: float) -> list[str]:
    return [sys.executable, "-m", "train", "run", "--store", str(store), "--out", str(rd), "--method", method,
            "--max-steps", str(a.max_steps), "--batch-size", str(a.batch), "--width", str(a.width), "--device",
            a.device, "--time-budget", f"{budget_min:.2f}", "--no-progress", "--log-every", str(a.log_every),
            "--overwrite", *(["--eval-every", str(a.eval_every)] if a.eval_every else []),
            *(["--compile"] if a.compile else [])]


def run(a: argparse.Namespace) -> None:
    import torch

    from train import checkpoint as ckpt

    t_start = time.perf_counter()
    out = Path(a.out or os.environ.get("OUT", "runs/gpu"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    env = environment()
    print("environment:", json.dumps(env), flush=True)
    store = Path(a.store)
    want = Path(a.sha256).read_text().split()[0] if a.sha256 and Path(a.sha256).is_file() else None
    got = sha256(store)
    if want and want != got:
        sys.exit(f"{store}: sha256 {got} differs from {a.sha256} ({want}): the store did not travel intact")
    print(f"data: {store} ({store.stat().st_size / 2**20:.1f} MiB, sha256 {got[:16]}... {'checked' if want else ''})",
          flush=True)
    methods = a.methods.split(",")
    flops = {m: iteration_flops(store, m, a.width, a.batch, a.device) for m in methods}  # also warms up CUDA
    print("FLOP per iteration:", {m: f"{f / 1e12:.3f} T" for m, f in flops.items()}, flush=True)
    # the time left for training: the command's limit less what ran so far, evaluation and margin
    left = a.limit_min - (time.perf_counter() - t_start) / 60 - a.reserve_min
    budgets = ({m: left for m in methods} if a.concurrent else
               {m: left * SHARE.get(m, 1.0) / sum(SHARE.get(k, 1.0) for k in methods) for m in methods})
    procs, logs, walls = {}, {}, {}
    t0 = {}
    for m in methods:
        logs[m] = (work / f"{m}.log").open("w")
        t0[m] = time.perf_counter()
        procs[m] = subprocess.Popen(train_cmd(store, work / m, m, a, budgets[m]), stdout=logs[m],
                                    stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if not a.concurrent:
            procs[m].wait()
            walls[m] = time.perf_counter() - t0[m]
    for m, p in procs.items():
        p.wait()
        walls.setdefault(m, time.perf_counter() - t0[m])
        logs[m].close()
        text = (work / f"{m}.log").read_text()
        print(f"--- {m} (exit {p.returncode}) ---\n" + "\n".join(text.splitlines()[-4:]), flush=True)
    results = {}
    evals = {}
    for m in methods:  # evaluations run side by side: HD95 is CPU work
        for which in ("best", "last"):
            f = work / m / "checkpoints" / f"{which}.pt"
            if f.is_file():
                evals[(m, which)] = subprocess.Popen(
                    [sys.executable, "-m", "train", "eval", "--checkpoint", str(f), "--store", str(store), "--split",
                     "valid", "--device", a.device, "--json", str(work / f"{m}_{which}.json")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for key, p in evals.items():
        _, err = p.communicate()
        if p.returncode:
            print(f"eval {key} failed: {err[-500:]}", flush=True)
    peak = peak_flops(env["device"])
    for m in methods:
        text = (work / f"{m}.log").read_text()
        done = re.search(r"done: (\d+) steps in ([\d.]+) s", text)
        steps, wall = (int(done.group(1)), float(done.group(2))) if done else (0, walls[m])
        r = {"iterations": steps, "train_wall_s": wall, "it_per_s": steps / max(wall, 1e-9),
             "flop_per_iteration": flops[m],
             "mfu": flops[m] * steps / max(wall, 1e-9) / peak if peak else None,
             "stopped_by_budget": "--time-budget" in text, "exit": procs[m].returncode}
        for which in ("best", "last"):
            j = work / f"{m}_{which}.json"
            if j.is_file():
                ev = json.loads(j.read_text())
                pp = ev.get("postprocessed") or {}
                r[which] = {"step": ev["step"], "dice": ev["dice"], "hd95_mm": ev["hd95_mm"],
                            "postprocessed": {k: pp[k] for k in ("dice", "hd95_mm") if k in pp} or None}
        best = work / m / "checkpoints" / "best.pt"
        if best.is_file():
            torch.save(ckpt.weights_only(ckpt.load(best)), out / f"{m}.pt")
            r["weights_mib"] = (out / f"{m}.pt").stat().st_size / 2**20
        if (work / m / "metrics.jsonl").is_file():
            shutil.copy(work / m / "metrics.jsonl", out / f"{m}_metrics.jsonl")
        results[m] = r
    summary = {"environment": env, "store_sha256": got, "concurrent": a.concurrent, "compile": a.compile,
               "budgets_min": budgets,
               "command_wall_s": time.perf_counter() - t_start, "results": results}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    logged = [str(work / m) for m in methods if (work / m / "metrics.jsonl").is_file()]
    if logged:  # the curves as a PNG: validation Dice per method, losses
        subprocess.run([sys.executable, "-m", "train", "plot", *logged, "--out", str(out / "curves.png"),
                        "--overwrite", "--title", f"ACDC validation patients, {env['device']}"], check=False)
    print(table(results, env, a.compile), flush=True)


def table(results: dict, env: dict, compiled: bool = False) -> str:
    lines = [f"validation patients (15; ED and ES volumes), {env['device']}, torch {env['torch']}, "
             f"{'train run --compile' if compiled else 'eager'}",
             "| method | RV Dice | MYO Dice | LV Dice | mean Dice | mean HD95 mm | post-processed Dice | "
             "post-processed HD95 mm | last mean Dice | iterations | wall s | it/s | MFU |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(x: float | None, nd: int) -> str:
        return "-" if x is None else f"{x:.{nd}f}"

    for m, r in results.items():
        b = r.get("best", {"dice": {}, "hd95_mm": {}})
        d, h = b["dice"], b["hd95_mm"]
        pp = b.get("postprocessed") or {"dice": {}, "hd95_mm": {}}
        last = r.get("last", {"dice": {}})["dice"].get("mean")
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
        lines.append(f"| {m} | {f(d.get('RV'), 3)} | {f(d.get('MYO'), 3)} | {f(d.get('LV'), 3)} | "
                     f"{f(d.get('mean'), 3)} | {f(h.get('mean'), 1)} | {f(pp['dice'].get('mean'), 3)} | "
                     f"{f(pp['hd95_mm'].get('mean'), 1)} | {f(last, 3)} | {r['iterations']} | "
                     f"{r['train_wall_s']:.0f} | {r['it_per_s']:.1f} | {mfu} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: convert, pack the store and fetch wheels into .device/")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "acdc")
    p.add_argument("--mantissa-bits", type=int, default=7)
    r = sub.add_parser("run", help="on the GPU machine: train, evaluate, report")
    r.add_argument("--store", default=str(STORE))
    r.add_argument("--sha256", default=str(DEVICE / "acdc_maag_gpu.sha256"))
    r.add_argument("--out", default=None, help="default: $OUT")
    r.add_argument("--work", default="/tmp/gpu_acdc")
    r.add_argument("--methods", default=",".join(METHODS))
    r.add_argument("--max-steps", type=int, default=24000)
    r.add_argument("--batch", type=int, default=12)
    r.add_argument("--width", type=int, default=32)
    r.add_argument("--eval-every", type=int, default=0)
    r.add_argument("--log-every", type=int, default=500)
    r.add_argument("--device", default="cuda")
    r.add_argument("--sequential", dest="concurrent", action="store_false", help="one method after the other")
    r.add_argument("--compile", action="store_true", help="train run --compile (gpu_acdc.sh: COMPILE=1); "
                   "off by default: measured on CPU only")
    r.add_argument("--limit-min", type=float, default=9.0, help="the whole command's wall-time target")
    r.add_argument("--reserve-min", type=float, default=1.5, help="kept free for evaluation and writing")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a)
    else:
        run(a)


if __name__ == "__main__":
    main()
