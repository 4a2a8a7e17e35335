"""Conversion of the real ACDC patients vs the decode floor, as whole processes.

The floor is one process that only nibabel-loads every input file (frames, masks, scribbles)
once. The conversion is `datakit convert acdc` with its defaults (workers = CPU count). Both are
timed the same way, as whole processes including interpreter start-up, in 3 interleaved rounds
(the previous round's store is deleted before each conversion, outside the timing);
the medians and their ratio are printed, with the peak resident memory of the conversion's whole
process tree (main process + workers).

    python benchmarks/convert_acdc.py [--src ../shared/data/acdc] [--rounds 3] [--convert-args "--image-dtype float16"]

Target (docs/benchmarks.md): ratio <= 1.2 on the 2-core development machine, peak memory < 1 GB.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import run_measured  # noqa: E402

FLOOR = """
import sys, glob, nibabel as nib, numpy as np
for f in sorted(glob.glob(sys.argv[1] + '/**/*.nii.gz', recursive=True)):
    np.asarray(nib.load(f).dataobj)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--convert-args", default="", help="more convert options, e.g. '--image-dtype float16'")
    a = ap.parse_args()
    if not a.src.is_dir():
        raise SystemExit(f"{a.src}: not found (the real ACDC data lives in ../shared/data/acdc)")
    n_files = len(list(a.src.rglob("*.nii.gz")))
    size_mb = sum(p.stat().st_size for p in a.src.rglob("*.nii.gz")) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "acdc.h5"
        convert = [sys.executable, "-m", "datakit", "convert", "acdc", str(a.src), "--out", str(out),
                   "--overwrite", "--workers", str(a.workers), *shlex.split(a.convert_args)]
        floor = [sys.executable, "-c", FLOOR, str(a.src)]
        run_measured(floor)  # warm the page cache so that neither side pays for the disk
        t_conv, t_floor, peaks, c_conv, c_floor = [], [], [], [], []
        for r in range(a.rounds):
            wall_f, _, cpu_f = run_measured(floor)
            out.unlink(missing_ok=True)  # untimed: freeing the last round's 300 MB is not conversion work
            wall_c, peak, cpu_c = run_measured(convert)
            t_floor.append(wall_f)
            t_conv.append(wall_c)
            c_floor.append(cpu_f)
            c_conv.append(cpu_c)
            peaks.append(peak)
            print(f"round {r + 1}: floor {wall_f:.2f} s ({cpu_f:.2f} CPU s), convert {wall_c:.2f} s "
                  f"({cpu_c:.2f} CPU s), wall ratio {wall_c / wall_f:.2f}, peak {peak:.0f} MB", flush=True)
        store_mb = out.stat().st_size / 2**20
    med_f, med_c = statistics.median(t_floor), statistics.median(t_conv)
    print(f"\ninput: {n_files} NIfTI files, {size_mb:.0f} MB gzip; store {store_mb:.0f} MB"
          + (f" (convert {a.convert_args})" if a.convert_args else ""))
    print(f"decode floor (nibabel, 1 process): {med_f:.2f} s (median of {a.rounds})")
    print(f"datakit convert acdc:              {med_c:.2f} s (median of {a.rounds})")
    print(f"ratio convert / floor:             {med_c / med_f:.2f}  (target <= 1.2)")
    print(f"CPU seconds, floor / convert:      {statistics.median(c_floor):.2f} / {statistics.median(c_conv):.2f} "
          f"(ratio {statistics.median(c_conv) / statistics.median(c_floor):.2f}; {os.cpu_count()} cores)")
    print(f"load average at the end:           {os.getloadavg()[0]:.1f} (wall ratios are only meaningful near 0)")
    print(f"peak memory (process tree):        {max(peaks):.0f} MB  (target < 1024)")


if __name__ == "__main__":
    main()
