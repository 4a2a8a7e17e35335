"""CAMUS conversion of a 50-patient synthetic release with sequences vs the decode floor.

The phantom release (``datakit synth camus``, real-like pixel sizes) is converted with
``--frames sequence`` (every frame of every half sequence / sequence, both views), defaults
otherwise (workers = CPU count). The floor is one process that only SimpleITK-reads, once, every
image file that conversion reads (the sequences and their ground truth; for the MHD release also
the ED / ES ground truth). Both are timed as whole processes including interpreter start-up, in
interleaved rounds; medians and their ratio are printed.

    python benchmarks/convert_camus.py [--release nifti|mhd] [--patients 50] [--rounds 3] [--src DIR]

Target (docs/benchmarks.md): ratio <= 2 on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import run_measured  # noqa: E402

FLOOR = """
import sys, SimpleITK as sitk
for f in open(sys.argv[1]).read().split():
    sitk.GetArrayFromImage(sitk.ReadImage(f))
"""


def run_timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a whole process tree, interpreter start-up included (see _proc)."""
    wall, _, cpu = run_measured(cmd)
    return wall, cpu


def input_files(root: Path, release: str) -> list[Path]:
    """The image files `convert camus --frames sequence` reads, nothing else."""
    if release == "nifti":
        return sorted(root.rglob("*_half_sequence*.nii.gz"))
    return sorted([*root.rglob("*_sequence.mhd"), *root.rglob("*_E[DS]_gt.mhd")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", choices=["nifti", "mhd"], default="nifti")
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--src", type=Path, help="an existing phantom release to reuse (default: write one)")
    a = ap.parse_args()
    from datakit.synth.camus import write_camus_phantoms

    with tempfile.TemporaryDirectory() as tmp:
        root = a.src or Path(tmp) / "camus"
        if a.src is None:
            write_camus_phantoms(root, patients=a.patients, release=a.release, seed=0)
        files = input_files(root, a.release)
        listing = Path(tmp) / "files.txt"
        listing.write_text("\n".join(map(str, files)))
        size_mb = sum(p.stat().st_size + (p.with_suffix(".raw").stat().st_size if p.suffix == ".mhd" else 0)
                      for p in files) / 2**20
        out = Path(tmp) / "camus.h5"
        convert = [sys.executable, "-c", "from datakit.cli import main; main()", "convert", "camus", str(root),
                   "--out", str(out),
                   "--frames", "sequence", "--overwrite", "--workers", str(a.workers)]
        floor = [sys.executable, "-c", FLOOR, str(listing)]
        run_timed(floor)  # warm the page cache so that neither side pays for the disk
        floors, convs = [], []
        for r in range(a.rounds):
            floors.append(run_timed(floor))
            convs.append(run_timed(convert))
            (wf, cf), (wc, cc) = floors[-1], convs[-1]
            print(f"round {r + 1}: floor {wf:.2f} s (CPU {cf:.2f} s), convert {wc:.2f} s (CPU {cc:.2f} s), "
                  f"ratio {wc / wf:.2f} (CPU {cc / cf:.2f})", flush=True)
        import h5py

        with h5py.File(out) as f:
            n = f["images"].shape[0]
        store_mb = out.stat().st_size / 2**20
    med_f, med_c = (statistics.median(w for w, _ in t) for t in (floors, convs))
    cpu_f, cpu_c = (statistics.median(c for _, c in t) for t in (floors, convs))
    print(f"\ninput: {a.patients} patients ({a.release}), {len(files)} image files, {size_mb:.0f} MB on disk; "
          f"store {n} samples, {store_mb:.0f} MB")
    print(f"decode floor (SimpleITK, 1 process): {med_f:.2f} s, CPU {cpu_f:.2f} s (medians of {a.rounds})")
    print(f"datakit convert camus --frames sequence: {med_c:.2f} s, CPU {cpu_c:.2f} s "
          f"({a.workers or 'CPU-count'} workers)")
    print(f"ratio convert / floor: {med_c / med_f:.2f} wall (target <= 2), {cpu_c / cpu_f:.2f} CPU")


if __name__ == "__main__":
    main()
